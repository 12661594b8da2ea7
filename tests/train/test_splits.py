"""The validation split and the clips outside it."""

from __future__ import annotations

import pytest

from memvos.train.splits import HARD, HELD_OUT_SIX, OUTSIDE, SPLITS, excluded_names


def test_the_parts_are_disjoint_and_cover_davis2016_train_once():
    parts = [HARD, HELD_OUT_SIX, OUTSIDE]
    keys = [(s.dataset, s.name) for part in parts for s in part]
    assert len(keys) == len(set(keys))
    assert len([k for k in keys if k[0] == "davis2016-train"]) == 30  # every DAVIS-2016 train sequence
    assert SPLITS["validation"] == HARD + HELD_OUT_SIX


def test_excluded_names_are_those_of_one_dataset():
    assert excluded_names("outside", "davis2017-extra") == ["dogs-jump"]
    assert len(excluded_names("outside", "davis2016-train")) == 14
    assert "schoolgirls" in excluded_names("validation", "davis2017-extra")
    with pytest.raises(ValueError, match="unknown split"):
        excluded_names("val", "davis2016-train")
