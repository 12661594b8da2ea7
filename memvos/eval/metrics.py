"""DAVIS region (J) and boundary (F) measures and their per-object statistics.

Definitions follow the DAVIS benchmark: J is the IoU (1 when the object is absent from
both masks); F matches one-pixel boundary maps (the BSDS ``seg2bmap`` definition) within
ceil(0.008 x image diagonal) pixels, using a disk structuring element.
The work is restricted to the bounding box of the boundaries (plus the tolerance), which
gives identical numbers and is much faster for objects smaller than the frame.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal
DECAY_BINS = 4


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """Intersection over union of two boolean masks, void pixels ignored; 1.0 when both are empty."""
    if void is not None:
        valid = ~void
        gt, pred = gt & valid, pred & valid
    union = np.count_nonzero(gt | pred)
    if union == 0:
        return 1.0
    return np.count_nonzero(gt & pred) / union


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a boolean mask (BSDS / DAVIS definition).

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour; on the last row only east counts, on the last column only south, and the
    bottom-right pixel is never a boundary.
    """
    mask = mask.astype(bool, copy=False)
    east = np.zeros_like(mask)
    south = np.zeros_like(mask)
    south_east = np.zeros_like(mask)
    east[:, :-1] = mask[:, 1:]
    south[:-1, :] = mask[1:, :]
    south_east[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ east) | (mask ^ south) | (mask ^ south_east)
    boundary[-1, :] = mask[-1, :] ^ east[-1, :]
    boundary[:, -1] = mask[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


@lru_cache(maxsize=16)
def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 disk: offsets (dy, dx) with dy^2 + dx^2 <= r^2."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_tolerance(shape: tuple[int, int], bound_th: float = BOUNDARY_TOLERANCE) -> int:
    """Match tolerance in pixels: ``bound_th`` itself if >= 1, else ceil(bound_th x diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(*shape))


def _box(*masks: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (y0, y1, x0, x1), end-exclusive, of the union of masks; None if all empty."""
    rows = np.zeros(masks[0].shape[0], dtype=bool)
    cols = np.zeros(masks[0].shape[1], dtype=bool)
    for m in masks:
        rows |= m.any(axis=1)
        cols |= m.any(axis=0)
    if not rows.any():
        return None
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def f_measure(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None,
              bound_th: float = BOUNDARY_TOLERANCE) -> float:
    """Boundary F-measure of ``pred`` against ``gt`` (boolean masks of the same size)."""
    if void is not None:
        valid = ~void
        gt, pred = gt & valid, pred & valid
    radius = boundary_tolerance(gt.shape, bound_th)
    box = _box(gt, pred)
    if box is None:  # both empty: no boundaries at all
        return 1.0
    # Crop with a margin: seg2bmap looks one pixel ahead, the dilation ``radius`` pixels around.
    margin = radius + 2
    h, w = gt.shape
    y0, y1 = max(box[0] - margin, 0), min(box[1] + margin, h)
    x0, x1 = max(box[2] - margin, 0), min(box[3] + margin, w)
    gt_b = _crop_boundary(gt, y0, y1, x0, x1)
    pred_b = _crop_boundary(pred, y0, y1, x0, x1)
    n_gt, n_pred = int(np.count_nonzero(gt_b)), int(np.count_nonzero(pred_b))
    if n_pred == 0 and n_gt == 0:
        precision = recall = 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        kernel = disk(radius)
        gt_dil = cv2.dilate(gt_b.view(np.uint8), kernel).astype(bool)
        pred_dil = cv2.dilate(pred_b.view(np.uint8), kernel).astype(bool)
        precision = np.count_nonzero(pred_b & gt_dil) / n_pred
        recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _crop_boundary(mask: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """seg2bmap of ``mask`` restricted to a crop, equal to cropping the full-frame map.

    The crop keeps the image's last row/column rules only where it reaches them; elsewhere
    the margin is background, so the crop's own last row/column hold no boundary.
    """
    return seg2bmap(mask[y0:y1, x0:x1])


def db_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay of per-frame values, as DAVIS computes them.

    Decay: mean of the first of 4 bins minus mean of the last; bin edges are
    round(linspace(1, n, 5)) - 1 and each bin includes its right edge (bins share edges).
    NaN values are ignored.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    edges = (np.round(np.linspace(1, len(values), DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    bins = [values[edges[i] : edges[i + 1] + 1] for i in range(DECAY_BINS)]
    with np.errstate(invalid="ignore"):
        first = np.nanmean(bins[0]) if np.any(~np.isnan(bins[0])) else math.nan
        last = np.nanmean(bins[-1]) if np.any(~np.isnan(bins[-1])) else math.nan
    return mean, recall, float(first - last)
