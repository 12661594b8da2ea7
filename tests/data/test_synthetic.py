"""Synthetic clips: deterministic, well-formed, objects appear when asked, occluders hide objects."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from memvos.data.masks import object_ids, read_mask
from memvos.data.synthetic import Clip, make_demo_clip, make_synthetic_clip, shape_mask

H, W = 64, 96


def _ids(labels) -> set[int]:
    return set(np.unique(labels).tolist()) - {0}


def test_same_seed_same_clip_other_seed_other_clip():
    a = make_synthetic_clip(n_frames=6, size=(H, W), n_objects=3, seed=11)
    b = make_synthetic_clip(n_frames=6, size=(H, W), n_objects=3, seed=11)
    c = make_synthetic_clip(n_frames=6, size=(H, W), n_objects=3, seed=12)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_array_equal(fa, fb)
    for la, lb in zip(a.labels, b.labels):
        np.testing.assert_array_equal(la, lb)
    assert any(not np.array_equal(fa, fc) for fa, fc in zip(a.frames, c.frames))
    assert any(not np.array_equal(la, lc) for la, lc in zip(a.labels, c.labels))


@pytest.mark.parametrize("n_objects", [1, 2, 4])
def test_shapes_dtypes_and_ids(n_objects):
    clip = make_synthetic_clip(n_frames=7, size=(H, W), n_objects=n_objects, seed=0, fps=9.0)
    assert isinstance(clip, Clip)
    assert len(clip.frames) == len(clip.labels) == 7
    assert clip.names == [f"{i:05d}" for i in range(7)]
    assert clip.fps == 9.0
    for frame, labels in zip(clip.frames, clip.labels):
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        assert labels.shape == (H, W) and labels.dtype == np.uint8
        assert _ids(labels) <= set(range(1, n_objects + 1))
    assert _ids(clip.labels[0]) == set(range(1, n_objects + 1))  # everything visible at the start
    # Frames are textured (not flat) and they change over time (objects move).
    assert all(float(f.std()) > 5 for f in clip.frames)
    assert any(not np.array_equal(a, b) for a, b in zip(clip.labels, clip.labels[1:]))


def test_objects_carry_their_texture():
    clip = make_synthetic_clip(n_frames=3, size=(H, W), n_objects=1, seed=4)
    frame, labels = clip.frames[0].astype(float), clip.labels[0]
    inside = frame[labels == 1].mean(axis=0)
    outside = frame[labels == 0].mean(axis=0)
    assert np.abs(inside - outside).max() > 3  # the object looks different from the background


def test_appear_at_is_respected():
    n = 10
    clip = make_synthetic_clip(n_frames=n, size=(H, W), n_objects=2, seed=2, appear_at={2: 5})
    for t, labels in enumerate(clip.labels):
        present = _ids(labels)
        assert 1 in present, f"frame {t}"
        if t < 5:
            assert 2 not in present, f"frame {t}"
        else:
            assert 2 in present, f"frame {t}"
    # The frames agree with the labels: where object 2 shows up at frame 5 over background,
    # the pixels change between frames 4 and 5.
    later = clip.labels[5] == 2
    untouched = later & (clip.labels[4] == 0)
    assert untouched.any()
    assert not np.array_equal(clip.frames[4][untouched], clip.frames[5][untouched])


def test_occluder_reduces_visible_area():
    kwargs = {"n_frames": 8, "size": (H, W), "n_objects": 2, "seed": 7}
    plain = make_synthetic_clip(**kwargs)
    occluded = make_synthetic_clip(**kwargs, occluder=True)
    plain_area = np.array([[(lab == k).sum() for k in (1, 2)] for lab in plain.labels])
    occluded_area = np.array([[(lab == k).sum() for k in (1, 2)] for lab in occluded.labels])
    assert np.all(occluded_area <= plain_area)  # an occluder never adds object pixels
    assert occluded_area.sum() < plain_area.sum()
    # The occluder is not an object: no new id, and it changes some pixels.
    assert all(_ids(lab) <= {1, 2} for lab in occluded.labels)
    assert any(not np.array_equal(a, b) for a, b in zip(plain.frames, occluded.frames))
    # Where an object pixel disappears, the label becomes background (0).
    for a, b in zip(plain.labels, occluded.labels):
        hidden = (a > 0) & (b != a)
        assert np.all(b[hidden] == 0)


def test_shape_mask_kinds():
    for kind in ("ellipse", "rectangle", "triangle", "star"):
        mask = shape_mask(kind, 40)
        assert mask.shape == (40, 40) and mask.dtype == bool
        assert 0.1 < mask.mean() < 0.9
    with pytest.raises(ValueError):
        shape_mask("hexagon", 40)


def test_clip_save_writes_frames_and_palette_masks(tmp_path):
    clip = make_synthetic_clip(n_frames=3, size=(H, W), seed=1)
    clip.save(tmp_path / "frames", tmp_path / "masks", ext=".png")
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "frames" / f"{i:05d}.png")), clip.frames[i])
        np.testing.assert_array_equal(read_mask(tmp_path / "masks" / f"{i:05d}.png"), clip.labels[i])


def test_demo_clip_has_two_objects_in_first_frame():
    clip = make_demo_clip(n_frames=2)
    assert len(clip.frames) == 2
    assert clip.frames[0].shape == (360, 640, 3) and clip.frames[0].dtype == np.uint8
    assert object_ids(clip.labels[0]) == (1, 2)
    for obj in (1, 2):
        assert (clip.labels[0] == obj).sum() > 500  # clearly visible, not a stray pixel
