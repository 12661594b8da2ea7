"""J and F against hand-computed cases and a brute-force reading of the DAVIS definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memvos.eval.metrics import boundary_tolerance, db_statistics, f_measure, jaccard, seg2bmap


def square(shape, top, left, side):
    m = np.zeros(shape, bool)
    m[top : top + side, left : left + side] = True
    return m


@pytest.mark.parametrize("k", [0, 1, 3, 7, 19])
def test_jaccard_of_shifted_square(k):
    gt = square((40, 60), 10, 10, 20)
    pred = square((40, 60), 10, 10 + k, 20)
    # overlap 20 x (20 - k), union 20 x (20 + k)
    assert jaccard(gt, pred) == pytest.approx((20 - k) / (20 + k))


def test_jaccard_conventions():
    gt = square((30, 30), 5, 5, 10)
    empty = np.zeros_like(gt)
    assert jaccard(gt, gt) == 1.0
    assert jaccard(gt, empty) == 0.0
    assert jaccard(empty, empty) == 1.0  # absent in both


def test_void_pixels_are_ignored():
    gt = square((30, 30), 5, 5, 10)
    pred = square((30, 30), 5, 5, 12)  # 44 extra pixels
    void = pred & ~gt
    assert jaccard(gt, pred) < 1.0
    assert jaccard(gt, pred, void) == 1.0
    assert f_measure(gt, pred, void) == pytest.approx(f_measure(gt, gt))


def test_seg2bmap_single_pixel():
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    # the pixel differs from nothing inside; its west, north and north-west neighbours
    # differ from their east / south / south-east neighbour
    expected = {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert set(zip(*np.nonzero(seg2bmap(m)))) == expected


def test_seg2bmap_full_and_empty():
    assert not seg2bmap(np.ones((6, 7), bool)).any()
    assert not seg2bmap(np.zeros((6, 7), bool)).any()


def test_seg2bmap_square_is_a_ring_of_4s_pixels():
    s = 6
    b = seg2bmap(square((20, 20), 5, 7, s))
    assert b.sum() == 4 * s
    ys, xs = np.nonzero(b)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 4 + s, 6, 6 + s)


def test_tolerance_is_ceil_of_diagonal_fraction():
    assert boundary_tolerance((480, 854)) == math.ceil(0.008 * math.hypot(480, 854)) == 8
    assert boundary_tolerance((100, 100)) == 2
    assert boundary_tolerance((100, 100), bound_th=3) == 3


def brute_force_f(gt, pred, radius):
    """F-measure straight from the definition: boundary pixels matched within ``radius``."""
    bg, bp = np.argwhere(seg2bmap(gt)), np.argwhere(seg2bmap(pred))
    if len(bg) == 0 or len(bp) == 0:
        return None
    d = np.sqrt(((bg[:, None, :] - bp[None, :, :]) ** 2).sum(-1))
    recall = np.mean(d.min(axis=1) <= radius)
    precision = np.mean(d.min(axis=0) <= radius)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("seed", range(6))
def test_f_measure_matches_brute_force_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    shape = (70, 90)
    yy, xx = np.mgrid[: shape[0], : shape[1]]

    def blob():
        m = np.zeros(shape, bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])  # may touch the border
            m |= (yy - cy) ** 2 / rng.uniform(9, 300) + (xx - cx) ** 2 / rng.uniform(9, 300) <= 1
        return m

    gt, pred = blob(), blob()
    radius = boundary_tolerance(shape)
    expected = brute_force_f(gt, pred, radius)
    assert expected is not None
    assert f_measure(gt, pred) == pytest.approx(expected, abs=1e-12)


def test_f_measure_shift_within_and_beyond_tolerance():
    shape = (100, 100)  # tolerance 2 px
    gt = square(shape, 30, 30, 30)
    assert f_measure(gt, gt) == 1.0
    assert f_measure(gt, square(shape, 30, 32, 30)) == 1.0
    assert f_measure(gt, square(shape, 30, 35, 30)) < 1.0


def test_f_measure_empty_conventions():
    gt = square((50, 50), 10, 10, 10)
    empty = np.zeros_like(gt)
    assert f_measure(gt, empty) == 0.0  # precision 1, recall 0
    assert f_measure(empty, gt) == 0.0  # precision 0, recall 1
    assert f_measure(empty, empty) == 1.0


def test_db_statistics_hand_computed():
    v = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    mean, recall, decay = db_statistics(v)
    assert mean == pytest.approx(0.55)
    assert recall == pytest.approx(4 / 8)  # strictly above 0.5
    # 8 values: bin edges round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]; first bin v[0:3], last v[5:8]
    assert decay == pytest.approx(np.mean(v[0:3]) - np.mean(v[5:8]))


def test_db_statistics_constant_has_no_decay():
    assert db_statistics(np.full(50, 0.7)) == pytest.approx((0.7, 1.0, 0.0))
