"""Palette PNGs (DAVIS palette), per-object PNGs, RGBA cut-outs and overlays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from memvos.data.masks import read_mask
from memvos.data.writers import (
    cutout_rgba,
    labels_in,
    render_overlay,
    write_cutout,
    write_object_pngs,
    write_palette_png,
)

H, W = 64, 96


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The classic PASCAL VOC colour map (``bitget`` loop), written independently of memvos."""

    def bitget(value: int, idx: int) -> int:
        return (value >> idx) & 1

    cmap = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= bitget(c, 0) << (7 - j)
            g |= bitget(c, 1) << (7 - j)
            b |= bitget(c, 2) << (7 - j)
            c >>= 3
        cmap.append((r, g, b))
    return cmap


VOC = voc_palette()


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _labels() -> np.ndarray:
    labels = np.zeros((H, W), np.uint8)
    labels[8:40, 8:40] = 1
    labels[20:60, 50:90] = 3
    labels[0:6, 60:70] = 255
    return labels


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------- the independent palette itself


def test_reference_palette_known_entries():
    assert VOC[0] == (0, 0, 0)
    assert VOC[1] == (128, 0, 0)
    assert VOC[2] == (0, 128, 0)
    assert VOC[3] == (128, 128, 0)
    assert VOC[4] == (0, 0, 128)
    assert VOC[255] == (224, 224, 192)
    assert len(set(VOC)) == 256


# ---------------------------------------------------------------- write_palette_png


def test_palette_png_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 256, (H, W), dtype=np.uint8)
    labels[0, :4] = [0, 3, 7, 255]
    path = tmp_path / "00000.png"
    write_palette_png(path, labels)
    np.testing.assert_array_equal(read_mask(path), labels)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "P" and im.size == (W, H)
        np.testing.assert_array_equal(np.asarray(im), labels)
    assert _listing(tmp_path) == ["00000.png"]  # no temporary left behind


@pytest.mark.parametrize("ids", [[0, 1], [0, 1, 2, 3, 4], list(range(256))])
def test_saved_palette_is_the_davis_palette(tmp_path, ids):
    labels = np.resize(np.array(ids, np.uint8), (H, W))
    path = tmp_path / "m.png"
    write_palette_png(path, labels)
    with Image.open(path) as im:
        flat = im.getpalette()
        rgb = np.asarray(im.convert("RGB"))
    palette = [tuple(flat[3 * i : 3 * i + 3]) for i in range(len(flat) // 3)]
    assert len(palette) == 256
    assert palette[1] == (128, 0, 0)
    assert palette[2] == (0, 128, 0)
    assert palette[3] == (128, 128, 0)
    assert palette[4] == (0, 0, 128)
    assert palette[255] == (224, 224, 192)
    assert palette == VOC
    # Viewed as colours, every pixel shows its id's VOC colour.
    np.testing.assert_array_equal(rgb, np.array(VOC, np.uint8)[labels])


def test_palette_png_accepts_wider_int_labels(tmp_path):
    labels = _labels().astype(np.int64)
    path = tmp_path / "m.png"
    write_palette_png(path, labels)
    np.testing.assert_array_equal(read_mask(path), labels.astype(np.uint8))


@pytest.mark.parametrize("bad", [np.full((H, W), 256, np.int32), np.full((H, W), -1, np.int32)])
def test_palette_png_rejects_out_of_range(tmp_path, bad):
    path = tmp_path / "m.png"
    with pytest.raises(ValueError):
        write_palette_png(path, bad)
    assert _listing(tmp_path) == []


def test_palette_png_rejects_non_2d(tmp_path):
    with pytest.raises(ValueError) as info:
        write_palette_png(tmp_path / "m.png", np.zeros((H, W, 3), np.uint8))
    assert "m.png" in str(info.value)
    assert _listing(tmp_path) == []


def test_palette_png_creates_folders_and_overwrites(tmp_path):
    path = tmp_path / "out" / "seq" / "00003.png"
    write_palette_png(path, np.zeros((H, W), np.uint8))
    write_palette_png(path, _labels())
    np.testing.assert_array_equal(read_mask(path), _labels())
    assert _listing(tmp_path / "out") == ["seq", "seq/00003.png"]


# ---------------------------------------------------------------- write_object_pngs


def test_write_object_pngs(tmp_path):
    labels = _labels()
    write_object_pngs(tmp_path / "obj", "00007", labels, [1, 3, 9])
    assert _listing(tmp_path / "obj") == ["1", "1/00007.png", "3", "3/00007.png", "9", "9/00007.png"]
    for obj in (1, 3, 9):
        with Image.open(tmp_path / "obj" / str(obj) / "00007.png") as im:
            assert im.mode == "L"
            data = np.asarray(im)
        np.testing.assert_array_equal(data, np.where(labels == obj, 255, 0))
    assert not np.asarray(Image.open(tmp_path / "obj" / "9" / "00007.png")).any()  # absent id: empty mask
    # They read back as binary masks with object id 1.
    np.testing.assert_array_equal(read_mask(tmp_path / "obj" / "3" / "00007.png"), (labels == 3).astype(np.uint8))


# ---------------------------------------------------------------- cut-outs


def test_cutout_rgba_all_objects():
    frame, labels = _frame(), _labels()
    out = cutout_rgba(frame, labels)
    assert out.shape == (H, W, 4) and out.dtype == np.uint8
    objects = (labels == 1) | (labels == 3)  # void (255) is not an object
    np.testing.assert_array_equal(out[..., 3], np.where(objects, 255, 0))
    np.testing.assert_array_equal(out[objects, :3], frame[objects])
    assert not out[~objects].any()  # transparent pixels are black too


def test_cutout_rgba_selected_ids():
    frame, labels = _frame(), _labels()
    out = cutout_rgba(frame, labels, ids=[3])
    keep = labels == 3
    np.testing.assert_array_equal(out[..., 3], np.where(keep, 255, 0))
    np.testing.assert_array_equal(out[keep, :3], frame[keep])
    assert not out[~keep].any()
    assert not cutout_rgba(frame, labels, ids=[]).any()
    assert not cutout_rgba(frame, np.zeros((H, W), np.uint8)).any()


def test_write_cutout(tmp_path):
    frame, labels = _frame(), _labels()
    path = tmp_path / "cut.png"
    write_cutout(path, frame, labels, ids=[1])
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), cutout_rgba(frame, labels, [1]))


def test_labels_in():
    labels = _labels()
    np.testing.assert_array_equal(labels_in(labels, (1, 255)), (labels == 1) | (labels == 255))
    assert not labels_in(labels, ()).any()


# ---------------------------------------------------------------- overlay


def test_render_overlay_colours_objects_and_keeps_background():
    frame, labels = _frame(2), _labels()
    original = frame.copy()
    outline = 2
    out = render_overlay(frame, labels, alpha=0.5, outline=outline)
    np.testing.assert_array_equal(frame, original)  # the input is not modified
    assert out.shape == frame.shape and out.dtype == np.uint8

    # Pixels farther than the outline width from any label boundary.
    kernel = np.ones((2 * outline + 3, 2 * outline + 3), np.uint8)
    boundary = cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)
    background = (labels == 0) & ~boundary
    void = (labels == 255) & ~boundary
    np.testing.assert_array_equal(out[background], frame[background])
    np.testing.assert_array_equal(out[void], frame[void])

    palette = np.array(VOC, np.float32)
    for obj in (1, 3):
        inside = (labels == obj) & ~boundary
        assert inside.sum() > 100
        expected = 0.5 * frame[inside].astype(np.float32) + 0.5 * palette[obj]
        assert np.abs(out[inside].astype(np.float32) - expected).max() <= 1
        assert (out[inside] != frame[inside]).any(axis=1).mean() > 0.9
        # The outline, on the object's rim, is the solid palette colour.
        rim = (labels == obj) & (cv2.erode((labels == obj).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0)
        assert np.all(out[rim] == np.array(VOC[obj], np.uint8))


def test_render_overlay_alpha_and_no_outline():
    frame, labels = _frame(3), _labels()
    obj = labels == 1
    none = render_overlay(frame, labels, alpha=0.0, outline=0)
    np.testing.assert_array_equal(none, frame)
    full = render_overlay(frame, labels, alpha=1.0, outline=0)
    assert np.all(full[obj] == np.array(VOC[1], np.uint8))
    np.testing.assert_array_equal(full[labels == 0], frame[labels == 0])
    np.testing.assert_array_equal(render_overlay(frame, np.zeros((H, W), np.uint8)), frame)
