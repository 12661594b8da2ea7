"""Evaluate predicted masks against ground truth, folder against folder, as DAVIS does.

Layout: ``GT_DIR/<sequence>/<frame>.png`` and ``PRED_DIR/<sequence>/<frame>.png``.
Objects are the ids found in the ground truth. Each object is scored from the frame
after its first annotated appearance (frame 0 for DAVIS) to the frame before the last,
as the official semi-supervised evaluation does; ``all_frames`` scores every frame.
Frames are scored in parallel processes, in chunks.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from natsort import natsorted

from memvos.data.masks import fit_mask_to_frame, object_ids, read_mask
from memvos.data.palette import VOID_ID
from memvos.errors import InputError
from memvos.eval.metrics import db_statistics, f_measure, jaccard

log = logging.getLogger(__name__)

GLOBAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
CHUNK_FRAMES = 8


@dataclass
class ObjectScores:
    """Per-frame J and F of one object of one sequence, over its evaluated frames."""

    sequence: str
    object_id: int
    frames: list[str]
    j: np.ndarray
    f: np.ndarray

    def statistics(self) -> dict[str, float]:
        jm, jr, jd = db_statistics(self.j)
        fm, fr, fd = db_statistics(self.f)
        return {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}


@dataclass
class EvaluationResult:
    """Scores of every evaluated object, and the DAVIS global and per-sequence summaries."""

    objects: list[ObjectScores] = field(default_factory=list)

    def global_statistics(self) -> dict[str, float]:
        """Means over all objects of all sequences; J&F = (J-Mean + F-Mean) / 2."""
        if not self.objects:
            return {key: math.nan for key in GLOBAL_KEYS}
        stats = [o.statistics() for o in self.objects]
        out = {key: float(np.mean([s[key] for s in stats])) for key in GLOBAL_KEYS[1:]}
        return {"J&F-Mean": (out["J-Mean"] + out["F-Mean"]) / 2, **out}

    def per_sequence(self) -> dict[str, dict]:
        table: dict[str, dict] = {}
        for obj in self.objects:
            entry = table.setdefault(obj.sequence, {"objects": {}})
            entry["objects"][str(obj.object_id)] = {**obj.statistics(), "frames": len(obj.frames)}
        for entry in table.values():
            stats = list(entry["objects"].values())
            entry["J-Mean"] = float(np.mean([s["J-Mean"] for s in stats]))
            entry["F-Mean"] = float(np.mean([s["F-Mean"] for s in stats]))
            entry["J&F-Mean"] = (entry["J-Mean"] + entry["F-Mean"]) / 2
        return table

    def to_dict(self) -> dict:
        return {**self.global_statistics(), "per_sequence": self.per_sequence()}


@dataclass
class _Chunk:
    """Work for one process: some frames of one sequence."""

    sequence: str
    gt_files: list[Path]
    pred_files: list[Path | None]  # None: frame never scored, ground truth read only for ids


def _score_frame(gt_file: Path, pred_file: Path | None) -> tuple[tuple[int, ...], dict[int, tuple[float, float]]]:
    """Ground-truth ids of a frame and (J, F) of every id present in the ground truth or prediction.

    An id absent from both scores (1, 1); the caller fills those in.
    """
    gt = read_mask(gt_file)
    gt_ids = object_ids(gt)
    if pred_file is None:
        return gt_ids, {}
    pred = fit_mask_to_frame(read_mask(pred_file), gt.shape, pred_file)
    void = gt == VOID_ID
    has_void = bool(void.any())
    pred_valid = np.where(void, 0, pred) if has_void else pred
    ids = set(gt_ids) | set(object_ids(pred_valid))
    scores = {}
    for obj in ids:
        g, p = gt == obj, pred_valid == obj
        v = void if has_void else None
        scores[obj] = (jaccard(g, p, v), f_measure(g, p, v))
    return gt_ids, scores


def _score_chunk(chunk: _Chunk) -> list[tuple[tuple[int, ...], dict[int, tuple[float, float]]]]:
    return [_score_frame(g, p) for g, p in zip(chunk.gt_files, chunk.pred_files)]


def list_sequences(pred_dir: Path) -> list[str]:
    """Sequence folders of a prediction folder (those holding at least one PNG)."""
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    names = [d.name for d in pred_dir.iterdir() if d.is_dir() and any(d.glob("*.png"))]
    if not names:
        raise InputError(pred_dir, "no sequence folders with PNG masks (expected <sequence>/<frame>.png)")
    return natsorted(names)


def _plan_sequence(gt_dir: Path, pred_dir: Path, sequence: str,
                   all_frames: bool) -> tuple[list[Path], list[Path | None]]:
    """Ground-truth files of a sequence and the prediction file of each (None: never scored)."""
    gt_seq = gt_dir / sequence
    if not gt_seq.is_dir():
        raise InputError(pred_dir / sequence, f"sequence {sequence!r} has no ground truth in {gt_dir}")
    gt_files = natsorted(gt_seq.glob("*.png"), key=lambda p: p.name)
    if not gt_files:
        raise InputError(gt_seq, "no ground-truth PNG masks")
    pred_files: list[Path | None] = []
    for index, gt_file in enumerate(gt_files):
        scored = all_frames or 0 < index < len(gt_files) - 1
        pred_file = pred_dir / sequence / gt_file.name
        if scored and not pred_file.is_file():
            raise InputError(pred_file, f"predicted frame missing (ground truth has {gt_file.name})")
        pred_files.append(pred_file if scored else None)
    return gt_files, pred_files


def _assemble(sequence: str, frames: list[str], results, all_frames: bool) -> list[ObjectScores]:
    """Per-object score arrays from per-frame results, over each object's evaluated frames."""
    first_seen: dict[int, int] = {}
    for index, (gt_ids, _) in enumerate(results):
        for obj in gt_ids:
            first_seen.setdefault(obj, index)
    n = len(frames)
    objects = []
    for obj, first in sorted(first_seen.items()):
        indices = range(n) if all_frames else range(first + 1, n - 1)
        if len(indices) == 0:
            log.warning("%s: object %d appears on frame %s, after which no frame is scored; skipped",
                        sequence, obj, frames[first])
            continue
        j = np.array([results[i][1].get(obj, (1.0, 1.0))[0] for i in indices])
        f = np.array([results[i][1].get(obj, (1.0, 1.0))[1] for i in indices])
        objects.append(ObjectScores(sequence, obj, [frames[i] for i in indices], j, f))
    extra = {o for _, scores in results for o in scores} - set(first_seen)
    if extra:
        log.warning("%s: predicted ids %s are not in the ground truth; ignored", sequence, sorted(extra))
    return objects


def evaluate_folders(gt_dir: str | Path, pred_dir: str | Path, all_frames: bool = False,
                     sequences: Sequence[str] | None = None, workers: int | None = None) -> EvaluationResult:
    """Score every sequence of ``pred_dir`` (or the given ``sequences``) against ``gt_dir``."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if not gt_dir.is_dir():
        raise InputError(gt_dir, "ground-truth folder not found")
    names = list(sequences) if sequences else list_sequences(pred_dir)
    plans = {name: _plan_sequence(gt_dir, pred_dir, name, all_frames) for name in names}
    chunks = [
        _Chunk(name, gt_files[i : i + CHUNK_FRAMES], pred_files[i : i + CHUNK_FRAMES])
        for name, (gt_files, pred_files) in plans.items()
        for i in range(0, len(gt_files), CHUNK_FRAMES)
    ]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            chunk_results = list(pool.map(_score_chunk, chunks))
    else:
        chunk_results = [_score_chunk(c) for c in chunks]
    per_sequence: dict[str, list] = {name: [] for name in names}
    for chunk, results in zip(chunks, chunk_results):
        per_sequence[chunk.sequence].extend(results)
    result = EvaluationResult()
    for name, (gt_files, _) in plans.items():
        result.objects.extend(_assemble(name, [p.stem for p in gt_files], per_sequence[name], all_frames))
    return result
