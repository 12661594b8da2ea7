"""Fixtures of the app tests: a root folder holding a synthetic clip as a frame folder and as an
mp4, a folder outside it, a symlink pointing out; the shipped semi-supervised model, loaded once."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from memvos.data.synthetic import make_synthetic_clip
from memvos.data.video import write_video


@pytest.fixture(scope="session")
def shipped():
    """(model, config) of the shipped semi-supervised model (3 MB; fast on small frames). Not the
    interactive default: that one does not propagate on these synthetic sprite clips (README,
    Interactive), and these tests check the app, whose sessions run any model."""
    import torch

    from memvos.inference.interactive import load_interactive_model
    from memvos.model.factory import default_model_source

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine runs other jobs: more threads only contend
    yield load_interactive_model(default_model_source())
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def clip():
    made = make_synthetic_clip(n_frames=8, size=(192, 256), n_objects=2, seed=1)
    return SimpleNamespace(frames=np.stack(made.frames), labels=np.stack(made.labels), clip=made)


@pytest.fixture(scope="session")
def long_clip():
    made = make_synthetic_clip(n_frames=40, size=(64, 96), n_objects=1, seed=5)
    return SimpleNamespace(frames=np.stack(made.frames), labels=np.stack(made.labels), clip=made)


@pytest.fixture(scope="session")
def tree(tmp_path_factory, clip, long_clip) -> SimpleNamespace:
    """root/clip (PNG frames), root/clip.mp4, root/long (frames), root/notes.txt,
    root/link-out -> outside, outside/secret (frames)."""
    base = tmp_path_factory.mktemp("app")
    root, outside = base / "root", base / "outside"
    clip.clip.save(root / "clip", ext=".png")
    long_clip.clip.save(root / "long", ext=".png")
    write_video(root / "clip.mp4", list(clip.frames), fps=12)
    (root / "notes.txt").write_text("not a video")
    clip.clip.save(outside / "secret", ext=".png")
    write_video(outside / "secret.mp4", list(clip.frames[:2]), fps=12)
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    return SimpleNamespace(root=root, outside=outside, base=base)
