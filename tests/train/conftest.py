"""Tiny training data built in tmp_path: static image folders and a DAVIS layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from memvos.data.synthetic import make_synthetic_clip
from memvos.data.writers import write_palette_png


def make_static_root(root: Path, n: int = 4) -> Path:
    """``n`` images with instance masks (2 objects each) in images/ and masks/."""
    (root / "images").mkdir(parents=True)
    for k in range(n):
        clip = make_synthetic_clip(n_frames=1, size=(80, 96), n_objects=2, seed=100 + k)
        Image.fromarray(clip.frames[0]).save(root / "images" / f"{k}.jpg", quality=95)
        write_palette_png(root / "masks" / f"{k}.png", clip.labels[0])
    return root


def make_davis_root(root: Path, names: tuple[str, ...] = ("a", "b", "c"), frames: int = 8) -> Path:
    for k, name in enumerate(names):
        clip = make_synthetic_clip(n_frames=frames, size=(72, 96), n_objects=1 + k % 2, seed=k)
        clip.save(root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("\n".join(names) + "\n")
    return root


def tiny_config(tmp_path: Path, kind: str = "static", **train) -> dict:
    """A training config that runs in seconds: Lite0 keys, 8-channel values, 64x64 crops."""
    roots = [str(make_static_root(tmp_path / "static"))] if kind == "static" else \
        [str(make_davis_root(tmp_path / "davis"))]
    return {
        "model": {"model": {"type": "frozen-key-stm", "value_dim": 8, "decoder_dim": 8},
                  "read": {"mode": "kmn", "sigma": 8.0, "top_k": 5, "temperature": 0.1}},
        "out": str(tmp_path / "run"),
        "data": {"kind": kind, "roots": roots, "crop": 64, "max_objects": 2, "exclude_last": 1 if kind == "video" else 0},
        "train": {"iterations": 4, "batch_size": 2, "warmup": 1, "checkpoint_every": 2, "log_every": 1,
                  "bootstrap_warmup": 2, "threads": 1, **train},
    }


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def static_root(tmp_path):
    return make_static_root(tmp_path / "static")


@pytest.fixture
def davis_root(tmp_path):
    return make_davis_root(tmp_path / "davis")
