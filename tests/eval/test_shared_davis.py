"""`memvos eval` on the real DAVIS clips in ../shared/data (skipped when absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from memvos.data.masks import read_mask
from memvos.data.writers import write_palette_png
from memvos.eval.evaluate import evaluate_folders
from memvos.eval.metrics import jaccard

DAVIS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "davis2016-train"
GT = DAVIS / "Annotations" / "480p"

pytestmark = pytest.mark.skipif(not GT.is_dir(), reason=f"shared DAVIS data not found at {DAVIS}")


def test_ground_truth_against_itself_scores_one(tmp_path):
    for seq in ("bear", "tennis"):
        shutil.copytree(GT / seq, tmp_path / seq)
    g = evaluate_folders(GT, tmp_path).global_statistics()
    assert g["J&F-Mean"] == g["J-Mean"] == g["F-Mean"] == g["J-Recall"] == 1.0
    assert g["J-Decay"] == g["F-Decay"] == 0.0


def test_repeated_first_mask_scores_low_and_matches_direct_iou(tmp_path):
    seq = "soccerball"  # a ball that moves far: repeating frame 0 is wrong almost everywhere
    files = sorted((GT / seq).glob("*.png"))
    first = read_mask(files[0])
    for f in files:
        write_palette_png(tmp_path / seq / f.name, first)
    result = evaluate_folders(GT, tmp_path)
    direct = np.mean([jaccard(read_mask(f) == 1, first == 1) for f in files[1:-1]])
    g = result.global_statistics()
    assert g["J-Mean"] == pytest.approx(direct)
    assert g["J&F-Mean"] < 0.3
