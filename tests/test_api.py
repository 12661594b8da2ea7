"""The flat API: `import memvos` gives the whole job without digging into submodules."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import memvos
from memvos.data.synthetic import make_synthetic_clip


def test_import_memvos_does_not_load_torch():
    code = "import sys, memvos; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_every_exported_name_resolves():
    for name in memvos.__all__:
        assert getattr(memvos, name) is not None
    with pytest.raises(AttributeError):
        memvos.not_a_thing  # noqa: B018


def test_segment_frames_follows_the_objects_of_a_synthetic_clip():
    clip = make_synthetic_clip(n_frames=6, size=(192, 320), n_objects=2, seed=2)
    labels = memvos.segment_frames(list(clip.frames), {0: clip.labels[0]})
    assert labels.shape == (6, 192, 320) and labels.dtype == np.uint8
    assert np.array_equal(labels[0], clip.labels[0])  # the given frame keeps its mask
    for obj in (1, 2):
        gt, pred = clip.labels[-1] == obj, labels[-1] == obj
        assert (gt & pred).sum() / (gt | pred).sum() > 0.75


def test_segment_frames_refuses_masks_that_do_not_fit():
    frames = [np.zeros((32, 48, 3), np.uint8)] * 3
    with pytest.raises(memvos.InputError, match="mask for frame 0 is"):
        memvos.segment_frames(frames, {0: np.zeros((30, 48), np.uint8)})
    with pytest.raises(memvos.InputError, match="3 frames"):
        memvos.segment_frames(frames, {5: np.zeros((32, 48), np.uint8)})
    with pytest.raises(memvos.InputError, match="no masks"):
        memvos.segment_frames(frames, {})


def test_load_model_records_the_device_for_the_engine():
    _, config = memvos.load_model("training-free-lite0-fast", device="cpu")
    assert config.inference.device == "cpu"
