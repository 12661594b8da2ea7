"""Synthetic training clips from static images, with Hide-and-Seek."""

from __future__ import annotations

import numpy as np
import pytest

from memvos.data.static_clips import (
    ClipAugment,
    hide_and_seek,
    hide_probability,
    make_training_clip,
    pick_objects,
    random_affine,
)
from memvos.data.synthetic import smooth_texture

AUG = ClipAugment(crop=96, hide_grid=6, min_object_pixels=20)


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    image = smooth_texture((120, 160), rng)
    labels = np.zeros((120, 160), np.uint8)
    labels[20:60, 20:70] = 3
    labels[70:110, 90:150] = 7
    labels[5:8, 150:153] = 9  # too small to keep
    labels[100:115, 10:40] = 12
    labels[0:4, 0:4] = 255
    return image, labels


def test_pick_objects_renumbers_and_limits(sample):
    _, labels = sample
    out = pick_objects(labels, np.random.default_rng(1), ClipAugment(max_objects=2, min_object_pixels=20))
    assert set(np.unique(out)) == {0, 1, 2}
    areas = sorted(np.count_nonzero(out == i) for i in (1, 2))
    assert all(a in (40 * 50, 40 * 60, 15 * 30) for a in areas)  # whole instances, the tiny one never


def test_affine_maps_the_image_centre_near_the_crop_centre():
    rng = np.random.default_rng(2)
    aug = ClipAugment(crop=100, translate=0.0)
    m = random_affine(rng, (200, 300), aug)
    centre = m @ np.array([150, 100, 1.0])
    np.testing.assert_allclose(centre, [50, 50], atol=1e-9)


def test_clip_shapes_and_first_frame_never_hidden(sample):
    image, labels = sample
    clip = make_training_clip(image, labels, np.random.default_rng(3), AUG, hide_p=0.5)
    assert clip.frames.shape == (3, 96, 96, 3) and clip.frames.dtype == np.uint8
    assert clip.labels.shape == (3, 96, 96) and clip.hidden.shape == (3, 6, 6)
    assert not clip.hidden[0].any()
    assert clip.hidden[1:].any()
    assert set(np.unique(clip.labels)) <= {0, 1, 2, 3}


def test_hidden_cells_are_filled_and_removed_from_masks():
    rng = np.random.default_rng(4)
    frame = np.full((60, 60, 3), 200, np.uint8)
    labels = np.ones((60, 60), np.uint8)
    fill = np.array([10, 20, 30], np.uint8)
    out_frame, out_labels, hidden = hide_and_seek(frame, labels, 0.5, 6, rng, fill)
    cell = np.kron(hidden, np.ones((10, 10), bool))
    assert hidden.any() and not hidden.all()
    assert (out_labels[cell] == 0).all() and (out_labels[~cell] == 1).all()
    assert (out_frame[cell] == fill).all() and (out_frame[~cell] == 200).all()


def test_hide_probability_schedule():
    assert hide_probability(0, 100) == 0.0
    assert hide_probability(50, 100) == pytest.approx(0.25)
    assert hide_probability(100, 100) == pytest.approx(0.5)
    assert hide_probability(500, 100) == pytest.approx(0.5)


def test_switch_off_means_no_hiding(sample):
    image, labels = sample
    clip = make_training_clip(image, labels, np.random.default_rng(5), AUG, hide_p=0.0)
    assert not clip.hidden.any()


def test_deterministic_for_a_seed(sample):
    image, labels = sample
    a = make_training_clip(image, labels, np.random.default_rng(6), AUG, hide_p=0.3)
    b = make_training_clip(image, labels, np.random.default_rng(6), AUG, hide_p=0.3)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_reference_frame_shows_every_kept_object(sample):
    image, labels = sample
    for seed in range(10):
        clip = make_training_clip(image, labels, np.random.default_rng(seed), AUG)
        kept = set(np.unique(clip.labels)) - {0}
        assert kept and all(np.count_nonzero(clip.labels[0] == i) >= AUG.min_object_pixels for i in kept)


def test_hidden_cells_can_show_another_image():
    rng = np.random.default_rng(0)
    frame = np.full((24, 24, 3), 200, np.uint8)
    labels = np.ones((24, 24), np.uint8)
    other = np.random.default_rng(1).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    out_frame, out_labels, hidden = hide_and_seek(frame, labels, 0.5, 6, rng, other)
    cell = np.kron(hidden, np.ones((4, 4), bool))
    assert hidden.any() and (~hidden).any()
    assert (out_frame[cell] == other[cell]).all() and (out_frame[~cell] == 200).all()
    assert (out_labels[cell] == 0).all() and (out_labels[~cell] == 1).all()
