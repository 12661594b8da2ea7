"""Folder-level evaluation: frame selection, objects, errors and outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from memvos.data.writers import write_palette_png
from memvos.errors import InputError
from memvos.eval.evaluate import GLOBAL_KEYS, evaluate_folders
from memvos.eval.metrics import jaccard
from memvos.eval.report import save_csv, save_json

SHAPE = (40, 60)


def labels_with(*objects):
    """Label map with squares: objects are (id, top, left, side)."""
    out = np.zeros(SHAPE, np.uint8)
    for obj, top, left, side in objects:
        out[top : top + side, left : left + side] = obj
    return out


def write_sequence(root, seq, frames):
    for i, labels in enumerate(frames):
        write_palette_png(root / seq / f"{i:05d}.png", labels)


@pytest.fixture
def moving_square(tmp_path):
    """GT: a square moving 1 px per frame; prediction: the same square 3 px to the right."""
    n = 8
    gt = [labels_with((1, 10, 5 + t, 15)) for t in range(n)]
    pred = [labels_with((1, 10, 8 + t, 15)) for t in range(n)]
    write_sequence(tmp_path / "gt", "seq", gt)
    write_sequence(tmp_path / "pred", "seq", pred)
    return tmp_path, gt, pred


def test_identical_folders_score_one(moving_square):
    root, _gt, _ = moving_square
    result = evaluate_folders(root / "gt", root / "gt")
    assert result.global_statistics() == {k: (0.0 if "Decay" in k else 1.0) for k in GLOBAL_KEYS}


def test_shifted_square_has_known_j(moving_square):
    root, _gt, _pred = moving_square
    result = evaluate_folders(root / "gt", root / "pred", workers=1)
    (obj,) = result.objects
    assert obj.frames == [f"{i:05d}" for i in range(1, 7)]  # first and last frame excluded
    assert obj.j == pytest.approx(np.full(6, 12 / 18))  # overlap 15x12, union 15x18
    g = result.global_statistics()
    assert g["J-Mean"] == pytest.approx(12 / 18)
    assert g["J&F-Mean"] == pytest.approx((g["J-Mean"] + g["F-Mean"]) / 2)


def test_first_and_last_frames_excluded_unless_all_frames(tmp_path):
    n = 6
    gt = [labels_with((1, 5, 5, 10)) for _ in range(n)]
    pred = [labels_with((1, 5, 5, 10)) for _ in range(n)]
    pred[0] = np.zeros(SHAPE, np.uint8)
    pred[-1] = np.zeros(SHAPE, np.uint8)
    write_sequence(tmp_path / "gt", "a", gt)
    write_sequence(tmp_path / "pred", "a", pred)
    assert evaluate_folders(tmp_path / "gt", tmp_path / "pred").global_statistics()["J-Mean"] == 1.0
    all_frames = evaluate_folders(tmp_path / "gt", tmp_path / "pred", all_frames=True)
    assert all_frames.global_statistics()["J-Mean"] == pytest.approx((n - 2) / n)


def test_objects_with_non_contiguous_ids_and_late_appearance(tmp_path):
    n = 8
    gt = [labels_with((3, 2, 2, 10), *([(7, 20, 30, 12)] if t >= 3 else [])) for t in range(n)]
    pred = [labels_with((3, 2, 2, 10), (7, 20, 33, 12)) for t in range(n)]  # 7 predicted everywhere, shifted
    write_sequence(tmp_path / "gt", "s", gt)
    write_sequence(tmp_path / "pred", "s", pred)
    result = evaluate_folders(tmp_path / "gt", tmp_path / "pred")
    by_id = {o.object_id: o for o in result.objects}
    assert sorted(by_id) == [3, 7]
    assert by_id[3].frames == [f"{i:05d}" for i in range(1, 7)]
    assert by_id[7].frames == [f"{i:05d}" for i in range(4, 7)]  # after its first annotated frame (3)
    gt7, pred7 = gt[4] == 7, pred[4] == 7
    assert by_id[7].j == pytest.approx(np.full(3, jaccard(gt7, pred7)))
    # with every frame scored, frames before object 7 appears count as false positives (J = 0)
    full = {o.object_id: o for o in evaluate_folders(tmp_path / "gt", tmp_path / "pred", all_frames=True).objects}
    assert full[7].j[:3].tolist() == [0.0, 0.0, 0.0]


def test_object_absent_in_both_scores_one_and_void_ignored(tmp_path):
    gt = [labels_with((1, 5, 5, 10)) for _ in range(5)]
    gt[2] = np.zeros(SHAPE, np.uint8)  # object hidden on frame 2 ...
    pred = [g.copy() for g in gt]  # ... and the prediction agrees
    gt[3][0:3, :] = 255  # void band
    pred[3][0:3, :] = 1  # prediction paints the void band: not penalised
    write_sequence(tmp_path / "gt", "v", gt)
    write_sequence(tmp_path / "pred", "v", pred)
    result = evaluate_folders(tmp_path / "gt", tmp_path / "pred")
    assert result.objects[0].j.tolist() == [1.0, 1.0, 1.0]
    assert result.objects[0].f.tolist() == [1.0, 1.0, 1.0]


def test_parallel_equals_sequential(tmp_path):
    rng = np.random.default_rng(1)
    for seq in ("a", "b", "c"):
        n = 20
        gt = [labels_with((1, int(rng.integers(0, 20)), int(rng.integers(0, 40)), 12)) for _ in range(n)]
        pred = [labels_with((1, int(rng.integers(0, 20)), int(rng.integers(0, 40)), 12)) for _ in range(n)]
        write_sequence(tmp_path / "gt", seq, gt)
        write_sequence(tmp_path / "pred", seq, pred)
    one = evaluate_folders(tmp_path / "gt", tmp_path / "pred", workers=1)
    two = evaluate_folders(tmp_path / "gt", tmp_path / "pred", workers=2)
    assert one.to_dict() == two.to_dict()
    assert 0 < one.global_statistics()["J-Mean"] < 1


def test_missing_predicted_frame_is_an_error_naming_it(moving_square):
    root, _, _ = moving_square
    (root / "pred" / "seq" / "00004.png").unlink()
    with pytest.raises(InputError, match=r"00004\.png"):
        evaluate_folders(root / "gt", root / "pred")


def test_predicted_sequence_without_ground_truth(moving_square):
    root, _, pred = moving_square
    write_sequence(root / "pred", "other", pred)
    with pytest.raises(InputError, match="other"):
        evaluate_folders(root / "gt", root / "pred")


def test_prediction_folder_without_sequences(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(InputError, match="no sequence folders"):
        evaluate_folders(tmp_path / "gt", tmp_path / "pred")


def test_json_and_csv_outputs(moving_square, tmp_path):
    root, _, _ = moving_square
    result = evaluate_folders(root / "gt", root / "pred")
    save_json(result, tmp_path / "out" / "r.json")
    data = json.loads((tmp_path / "out" / "r.json").read_text())
    assert set(GLOBAL_KEYS) <= set(data)
    assert data["per_sequence"]["seq"]["objects"]["1"]["J-Mean"] == pytest.approx(12 / 18)
    save_csv(result, tmp_path / "csv")
    rows = list(csv.reader((tmp_path / "csv" / "global_results.csv").open()))
    assert rows[0] == list(GLOBAL_KEYS)
    assert float(rows[1][1]) == pytest.approx(12 / 18, abs=1e-6)
    per_seq = list(csv.DictReader((tmp_path / "csv" / "per-sequence_results.csv").open()))
    assert [(r["Sequence"], r["Object"], r["Frames"]) for r in per_seq] == [("seq", "1", "6")]
    assert not [p for p in (tmp_path / "csv").iterdir() if "partial" in p.name]
