"""Integration tests on the real data in ../shared/data; skipped cleanly when it is absent."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from memvos.data.datasets import DavisDataset, open_dataset
from memvos.data.masks import read_mask

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DAVIS2016 = SHARED / "davis2016-train"
EXAMPLES = SHARED / "examples"

pytestmark = pytest.mark.shared_data


def _need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


def test_davis2016_train_split_lists_30_sequences():
    root = _need(DAVIS2016)
    ds = DavisDataset(root, split="train")
    listed = (root / "ImageSets" / "train.txt").read_text().split()
    assert len(ds) == 30
    assert ds.sequences == listed
    assert len(set(ds.sequences)) == 30
    # Every sequence opens lazily with frames and one annotation per frame.
    seq = ds[ds.sequences[0]]
    assert len(seq.frames) > 1
    assert seq.frames.size == (480, 854)
    assert set(seq.annotations) == set(seq.frames.names)
    assert list(seq.first_appearances()) == [1]  # DAVIS-2016: one object per sequence


def test_davis2016_first_frame_and_mask_agree():
    root = _need(DAVIS2016)
    seq = DavisDataset(root, split="train")[DavisDataset(root, split="train").sequences[0]]
    frame = seq.frames[0]
    labels = seq.read_annotation(seq.frames.names[0])
    assert frame.shape == (480, 854, 3) and frame.dtype == np.uint8
    assert labels.shape == (480, 854)
    assert set(np.unique(labels).tolist()) <= {0, 1, 255}
    assert (labels == 1).any()


def test_judo_first_appearances():
    root = _need(EXAMPLES)
    ds = open_dataset(root)
    assert isinstance(ds, DavisDataset)
    assert "judo" in ds.sequences
    seq = ds["judo"]
    assert len(seq.frames) == 16
    assert sorted(seq.annotations) == ["00000", "00005", "00008", "00013"]
    assert seq.first_appearances() == {1: "00000", 2: "00005", 3: "00008", 4: "00013"}


def test_judo_853_wide_mask_is_fitted_with_warning(caplog):
    root = _need(EXAMPLES)
    seq = DavisDataset(root)["judo"]
    path = seq.annotations["00005"]
    raw = read_mask(path)
    assert raw.shape == (480, 853)  # the file really is one pixel narrower
    assert seq.frames.size == (480, 854)
    with caplog.at_level(logging.WARNING):
        fitted = seq.read_annotation("00005")
    assert fitted.shape == (480, 854)
    assert set(np.unique(fitted).tolist()) == set(np.unique(raw).tolist()) == {0, 2}
    # Nearest-neighbour resizing by one column keeps the object's area almost the same.
    assert abs(int((fitted == 2).sum()) - int((raw == 2).sum())) <= 480
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("00005.png" in m and "853" in m and "854" in m for m in warnings)
