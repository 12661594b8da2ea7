"""Synthetic scribbles: strokes stay where they belong, vary with the seed, and corrections target the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import ellipse
from skimage.measure import label

from memvos.data.scribbles import (
    click_disks,
    corrective_scribbles,
    corrupt_mask,
    random_walk_stroke,
    simulate_interaction,
    skeleton_strokes,
    stroke_width_for,
)

SHAPE = (240, 320)


def _rect(r0: int, r1: int, c0: int, c1: int, shape=SHAPE) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def _ellipse(row: int, col: int, ry: int, rx: int, shape=SHAPE, rotation: float = 0.3) -> np.ndarray:
    m = np.zeros(shape, bool)
    rr, cc = ellipse(row, col, ry, rx, shape=shape, rotation=rotation)
    m[rr, cc] = True
    return m


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


# ---------------------------------------------------------------- stroke_width_for


def test_stroke_width_scales_with_frame():
    assert stroke_width_for((480, 854)) == 3
    assert stroke_width_for((1080, 1920)) > stroke_width_for((480, 854))
    assert stroke_width_for((20, 30)) == 1


# ---------------------------------------------------------------- skeleton_strokes


@pytest.mark.parametrize("region", [_rect(40, 200, 50, 270), _ellipse(120, 160, 80, 120)], ids=["rect", "ellipse"])
def test_skeleton_strokes_inside_nonempty_and_thin(region):
    for seed in range(4):
        strokes = skeleton_strokes(region, np.random.default_rng(seed))
        assert strokes.dtype == bool and strokes.shape == region.shape
        assert strokes.any()
        assert not (strokes & ~region).any()
        assert strokes.sum() < 0.15 * region.sum()


def test_skeleton_strokes_keep_off_a_bumpy_boundary():
    base = _ellipse(120, 160, 80, 120)
    region = base.copy()
    edge = np.argwhere(base & ~_ellipse(120, 160, 78, 118))
    for r, c in edge[np.random.default_rng(0).choice(len(edge), 25, replace=False)]:
        region[r - 3:r + 4, c - 3:c + 4] = True  # bumps: a plain skeleton would spur into each of them
    boundary_band = region & ~_ellipse(120, 160, 70, 110)  # a 10-px band along the edge
    for seed in range(3):
        strokes = skeleton_strokes(region, np.random.default_rng(seed), radius=2)
        assert strokes.any() and not (strokes & boundary_band).any()


def test_skeleton_strokes_empty_or_tiny_region_gives_nothing():
    rng = np.random.default_rng(0)
    assert not skeleton_strokes(np.zeros(SHAPE, bool), rng).any()
    assert not skeleton_strokes(_rect(10, 13, 10, 13), rng, min_area=16).any()


def test_skeleton_strokes_touch_at_most_max_components():
    region = _rect(10, 60, 10, 60) | _rect(10, 60, 100, 170) | _rect(120, 230, 10, 300) | _rect(120, 230, 305, 318)
    components = label(region, connectivity=2)
    for max_components in (1, 2, 3):
        strokes = skeleton_strokes(region, np.random.default_rng(1), max_components=max_components)
        touched = set(np.unique(components[strokes])) - {0}
        assert 1 <= len(touched) <= max_components
    # the largest one (the wide bottom rectangle) is always among them
    strokes = skeleton_strokes(region, np.random.default_rng(1), max_components=1)
    assert (strokes & _rect(120, 230, 10, 300)).any()


def test_skeleton_strokes_skip_components_below_min_area():
    region = _rect(20, 200, 20, 200) | _rect(220, 225, 250, 255)  # big one + a 25-px speck
    strokes = skeleton_strokes(region, np.random.default_rng(0), max_components=2, min_area=100)
    assert not (strokes & _rect(220, 225, 250, 255)).any()


def test_skeleton_strokes_deterministic_per_seed_and_varied_across_seeds():
    region = _ellipse(120, 160, 80, 120)
    a = skeleton_strokes(region, np.random.default_rng(7))
    b = skeleton_strokes(region, np.random.default_rng(7))
    assert np.array_equal(a, b)
    variants = {skeleton_strokes(region, np.random.default_rng(s)).tobytes() for s in range(10)}
    assert len(variants) >= 3


# ---------------------------------------------------------------- random_walk_stroke


def test_random_walk_stays_inside_a_concave_region():
    region = _rect(20, 220, 20, 60) | _rect(180, 220, 20, 300) | _rect(20, 220, 260, 300)  # a U shape
    for seed in range(8):
        stroke = random_walk_stroke(region, np.random.default_rng(seed), radius=3)
        assert stroke.any()
        assert not (stroke & ~region).any()


def test_random_walk_moves_and_is_deterministic():
    region = _ellipse(120, 160, 80, 120)
    strokes = [random_walk_stroke(region, np.random.default_rng(s), radius=2) for s in range(6)]
    dot = math.pi * 2**2 + 10  # a stroke that never moved is just one disk
    assert max(s.sum() for s in strokes) > 3 * dot
    assert np.array_equal(strokes[0], random_walk_stroke(region, np.random.default_rng(0), radius=2))
    assert not random_walk_stroke(np.zeros(SHAPE, bool), np.random.default_rng(0)).any()


# ---------------------------------------------------------------- click_disks


def test_click_disk_area_is_about_pi_r_squared():
    disks = click_disks([(100, 50)], SHAPE, radius=10)
    assert disks.dtype == bool and disks.shape == SHAPE
    assert abs(disks.sum() - math.pi * 100) < 0.05 * math.pi * 100
    assert disks[50, 100] and not disks[50, 115] and not disks[65, 100]


def test_click_disks_union_and_default_radius():
    disks = click_disks([(20, 20), (200, 150)], SHAPE)
    r = 2 * stroke_width_for(SHAPE)
    assert label(disks).max() == 2
    assert abs(disks.sum() - 2 * math.pi * r * r) < 0.25 * 2 * math.pi * r * r
    assert not click_disks([], SHAPE).any()


@pytest.mark.parametrize("point", [(320, 10), (10, 240), (-1, 5)])
def test_click_outside_frame_raises_with_point_and_size(point):
    with pytest.raises(ValueError) as excinfo:
        click_disks([(5, 5), point], SHAPE)
    message = str(excinfo.value)
    assert f"x={point[0]}" in message and f"y={point[1]}" in message and "320x240" in message


# ---------------------------------------------------------------- corrupt_mask


def test_corrupt_mask_plausible_wrong_prediction():
    mask = _ellipse(120, 160, 70, 100)
    outs = [corrupt_mask(mask, np.random.default_rng(s)) for s in range(30)]
    assert all(o.dtype == bool and o.shape == mask.shape for o in outs)
    differ = sum(not np.array_equal(o, mask) for o in outs)
    assert differ >= 27
    ious = np.array([_iou(o, mask) for o in outs])
    assert np.median(ious) > 0.6
    assert (ious > 0.3).mean() >= 0.8
    assert np.array_equal(corrupt_mask(mask, np.random.default_rng(3)), outs[3])


def test_corrupt_mask_of_empty_mask_is_empty():
    assert not corrupt_mask(np.zeros(SHAPE, bool), np.random.default_rng(0)).any()


# ---------------------------------------------------------------- corrective_scribbles


def test_corrective_scribbles_lie_in_the_errors():
    truth = _ellipse(120, 160, 70, 100)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        prediction = corrupt_mask(truth, rng)
        positive, negative = corrective_scribbles(truth, prediction, rng)
        assert not (positive & ~(truth & ~prediction)).any()
        assert not (negative & ~(prediction & ~truth)).any()


def test_corrective_scribbles_nothing_to_correct():
    truth = _ellipse(120, 160, 70, 100)
    for seed in range(5):
        positive, negative = corrective_scribbles(truth, truth.copy(), np.random.default_rng(seed))
        assert not positive.any() and not negative.any()


def test_corrective_scribbles_mark_a_missed_blob_positive():
    truth = _rect(40, 200, 40, 280)
    blob = _ellipse(120, 220, 40, 50, rotation=0.0)
    prediction = truth & ~blob
    for seed in range(6):
        positive, negative = corrective_scribbles(truth, prediction, np.random.default_rng(seed))
        assert positive.any() and not (positive & ~blob).any()
        assert positive.sum() < 0.3 * blob.sum()  # strokes, not the whole error
        assert not negative.any()


def test_corrective_scribbles_mark_a_spurious_blob_negative():
    truth = _rect(40, 200, 40, 160)
    extra = _ellipse(120, 250, 40, 40)
    for seed in range(6):
        positive, negative = corrective_scribbles(truth, truth | extra, np.random.default_rng(seed))
        assert negative.any() and not (negative & ~extra).any()
        assert not positive.any()


# ---------------------------------------------------------------- simulate_interaction


def _two_objects() -> np.ndarray:
    return np.stack([_ellipse(80, 90, 50, 70), _rect(140, 230, 170, 310)])


def _check_sample(masks, prior, positive, negative):
    assert prior.shape == positive.shape == negative.shape == masks.shape
    assert prior.dtype == np.float32 and positive.dtype == bool and negative.dtype == bool
    assert prior.min() >= 0.0 and prior.max() <= 1.0
    for k in range(len(masks)):
        assert not (positive[k] & ~masks[k]).any()
        assert not (negative[k] & masks[k]).any()
        for j in range(len(masks)):
            if j != k:
                assert not (positive[j] & ~negative[k]).any()


def test_simulate_interaction_first_round():
    masks = _two_objects()
    for seed in range(3):
        prior, positive, negative = simulate_interaction(masks, np.random.default_rng(seed), first_round_p=1.0)
        _check_sample(masks, prior, positive, negative)
        assert not prior.any()
        assert positive.any(axis=(1, 2)).all()
        assert np.array_equal(negative[0], positive[1]) and np.array_equal(negative[1], positive[0])


def test_simulate_interaction_correction_round():
    masks = _two_objects()
    priors_nonzero = corrected = 0
    for seed in range(6):
        prior, positive, negative = simulate_interaction(masks, np.random.default_rng(seed), first_round_p=0.0)
        _check_sample(masks, prior, positive, negative)
        priors_nonzero += bool(prior.any())
        corrected += not all(np.array_equal(prior[k] > 0.5, masks[k]) for k in range(len(masks)))
        assert set(np.unique(prior)) <= {0.0, 1.0}
    assert priors_nonzero >= 5 and corrected >= 5


def test_simulate_interaction_absent_object_gets_no_positives():
    masks = _two_objects()
    masks[1] = False
    for p in (0.0, 1.0):
        _, positive, negative = simulate_interaction(masks, np.random.default_rng(0), first_round_p=p)
        assert not positive[1].any()
        assert not (positive[0] & ~negative[1]).any()
