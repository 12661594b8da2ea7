"""Mask reading (palette, grey, binary, RGB/RGBA colour) and fitting masks to the frame size."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from memvos.data.masks import fit_mask_to_frame, object_ids, read_mask, read_mask_info
from memvos.errors import InputError

H, W = 64, 96

# DAVIS palette colours, written out by hand (PASCAL VOC colour map).
BLACK = (0, 0, 0)
DAVIS_1 = (128, 0, 0)
DAVIS_2 = (0, 128, 0)
DAVIS_3 = (128, 128, 0)
DAVIS_4 = (0, 0, 128)
DAVIS_VOID = (224, 224, 192)
# Colours with the lowest bit set can never be DAVIS palette entries (only the top three
# bits of each channel are used by the 256-entry colour map).
ODD_A = (201, 13, 77)
ODD_B = (17, 99, 255)


def _blocks(ids, size=(H, W)) -> np.ndarray:
    """A label map with one vertical band per id (0 in the first band)."""
    h, w = size
    labels = np.zeros((h, w), np.uint8)
    bands = np.array_split(np.arange(w), len(ids))
    for obj, cols in zip(ids, bands):
        labels[:, cols] = obj
    return labels


def _save_palette_png(path, labels, palette=None):
    im = Image.fromarray(labels, mode="P")
    if palette is None:  # a grey palette: ids must come from the indices, not the colours
        palette = [v for i in range(256) for v in (i, i, i)]
    im.putpalette(palette)
    im.save(path)


# ---------------------------------------------------------------- palette PNG


def test_palette_png_keeps_ids(tmp_path):
    labels = _blocks([0, 3, 7, 255, 3])
    labels[0, 0] = 254
    path = tmp_path / "m.png"
    _save_palette_png(path, labels)
    assert Image.open(path).mode == "P"
    out = read_mask(path)
    assert out.dtype == np.uint8 and out.shape == (H, W)
    np.testing.assert_array_equal(out, labels)
    info = read_mask_info(path)
    assert info.ids == (3, 7, 254)
    np.testing.assert_array_equal(info.labels, labels)
    assert info.colour_to_id == {}


def test_palette_png_ids_do_not_depend_on_palette_colours(tmp_path):
    labels = _blocks([0, 1, 2])
    a, b = tmp_path / "grey.png", tmp_path / "random.png"
    _save_palette_png(a, labels)
    rng = np.random.default_rng(0)
    _save_palette_png(b, labels, rng.integers(0, 256, 768).tolist())
    np.testing.assert_array_equal(read_mask(a), labels)
    np.testing.assert_array_equal(read_mask(b), labels)


# ---------------------------------------------------------------- grey and binary masks


@pytest.mark.parametrize("on", [255, 1])
def test_binary_l_mask_is_object_1(tmp_path, on):
    binary = np.zeros((H, W), np.uint8)
    binary[10:30, 20:50] = on
    path = tmp_path / "m.png"
    Image.fromarray(binary, mode="L").save(path)
    out = read_mask(path)
    np.testing.assert_array_equal(out, (binary > 0).astype(np.uint8))
    assert read_mask_info(path).ids == (1,)


def test_mode_1_mask(tmp_path):
    bits = np.zeros((H, W), bool)
    bits[5:20, 7:70] = True
    path = tmp_path / "m.png"
    Image.fromarray(bits).convert("1").save(path)
    assert Image.open(path).mode == "1"
    out = read_mask(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, bits.astype(np.uint8))


def test_l_mask_with_few_levels_keeps_levels_as_ids(tmp_path):
    labels = _blocks([0, 2, 5, 9])
    path = tmp_path / "m.png"
    Image.fromarray(labels, mode="L").save(path)
    np.testing.assert_array_equal(read_mask(path), labels)
    assert read_mask_info(path).ids == (2, 5, 9)


def test_soft_l_mask_is_thresholded_with_warning(tmp_path, caplog):
    soft = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))  # a horizontal ramp, many levels
    path = tmp_path / "soft.png"
    Image.fromarray(soft, mode="L").save(path)
    with caplog.at_level(logging.WARNING):
        out = read_mask(path)
    np.testing.assert_array_equal(out, (soft >= 128).astype(np.uint8))
    assert any(r.levelno == logging.WARNING and "soft.png" in r.getMessage() for r in caplog.records)


def test_16_bit_mask(tmp_path):
    binary = np.zeros((H, W), np.uint16)
    binary[3:9, 3:9] = 1
    ok = tmp_path / "ok.png"
    Image.fromarray(binary).save(ok)
    np.testing.assert_array_equal(read_mask(ok), binary.astype(np.uint8))
    binary[0, 0] = 1000
    bad = tmp_path / "big.png"
    Image.fromarray(binary).save(bad)
    with pytest.raises(InputError) as info:
        read_mask(bad)
    assert str(bad) in str(info.value)


# ---------------------------------------------------------------- RGB / RGBA colour masks


def _colour_image(colours, size=(H, W)) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) image with one vertical band per colour, and the band index map."""
    h, w = size
    rgb = np.zeros((h, w, 3), np.uint8)
    band = np.zeros((h, w), int)
    for k, cols in enumerate(np.array_split(np.arange(w), len(colours))):
        rgb[:, cols] = colours[k]
        band[:, cols] = k
    return rgb, band


def test_rgb_davis_colours_map_to_their_index(tmp_path):
    colours = [BLACK, DAVIS_1, DAVIS_4, DAVIS_3, DAVIS_VOID]
    rgb, band = _colour_image(colours)
    path = tmp_path / "m.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    info = read_mask_info(path)
    expected = np.array([0, 1, 4, 3, 255])[band]
    np.testing.assert_array_equal(info.labels, expected)
    assert info.ids == (1, 3, 4)
    assert info.colour_to_id == {DAVIS_1: 1, DAVIS_4: 4, DAVIS_3: 3, DAVIS_VOID: 255}


def test_rgb_other_colours_get_new_ids_and_mapping_is_reported(tmp_path):
    colours = [BLACK, ODD_A, DAVIS_2, ODD_B, (255, 255, 255)]
    rgb, band = _colour_image(colours)
    path = tmp_path / "m.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    info = read_mask_info(path)
    mapping = info.colour_to_id
    assert set(mapping) == {ODD_A, DAVIS_2, ODD_B, (255, 255, 255)}
    assert mapping[DAVIS_2] == 2
    new_ids = [mapping[c] for c in (ODD_A, ODD_B, (255, 255, 255))]
    assert len(set(new_ids)) == 3  # distinct colours, distinct ids
    assert set(new_ids).isdisjoint({0, 2, 255})  # never background, void or a palette colour's id
    assert sorted(new_ids) == [1, 3, 4]  # the next free ids
    # The label map agrees with the reported mapping, pixel by pixel.
    for k, colour in enumerate(colours):
        assert set(np.unique(info.labels[band == k]).tolist()) == {mapping.get(colour, 0)}
    assert info.ids == (1, 2, 3, 4)
    np.testing.assert_array_equal(read_mask(path), info.labels)


def test_opaque_rgba_mask_reads_like_rgb(tmp_path):
    rgb, band = _colour_image([BLACK, DAVIS_1])
    rgba = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
    path = tmp_path / "m.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    np.testing.assert_array_equal(read_mask(path), np.array([0, 1])[band])


def test_rgba_transparent_is_background(tmp_path):
    rgb, band = _colour_image([DAVIS_1, DAVIS_2, ODD_A, ODD_B])
    alpha = np.full((H, W), 255, np.uint8)
    alpha[band == 1] = 0  # DAVIS_2 pixels, but fully transparent
    alpha[band == 3] = 0  # ODD_B pixels, transparent too
    alpha[:4, :] = 0  # and a transparent top strip over everything
    path = tmp_path / "m.png"
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    info = read_mask_info(path)
    assert np.all(info.labels[alpha == 0] == 0)
    assert np.all(info.labels[(band == 0) & (alpha > 0)] == 1)
    odd_a_id = info.colour_to_id[ODD_A]
    assert np.all(info.labels[(band == 2) & (alpha > 0)] == odd_a_id)
    assert ODD_B not in info.colour_to_id and DAVIS_2 not in info.colour_to_id
    assert info.ids == tuple(sorted({1, odd_a_id}))


def test_rgb_mask_with_too_many_colours(tmp_path):
    rgb = np.zeros((16, 20, 3), np.uint8)
    rgb[..., 0] = np.arange(16 * 20).reshape(16, 20) % 256
    rgb[..., 1] = np.arange(16 * 20).reshape(16, 20) // 256 + 1  # 320 distinct non-black colours
    path = tmp_path / "many.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    with pytest.raises(InputError) as info:
        read_mask(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- empty, missing, corrupt


@pytest.mark.parametrize("fill", [0, 255])
def test_require_object_on_empty_mask(tmp_path, fill):
    path = tmp_path / "empty.png"
    _save_palette_png(path, np.full((H, W), fill, np.uint8))
    # Without the requirement an empty mask is fine.
    np.testing.assert_array_equal(read_mask(path), np.full((H, W), fill, np.uint8))
    assert read_mask_info(path).ids == ()
    for reader in (read_mask, read_mask_info):
        with pytest.raises(InputError) as info:
            reader(path, require_object=True)
        assert str(path) in str(info.value)
        assert info.value.path == path


def test_require_object_passes_with_an_object(tmp_path):
    path = tmp_path / "m.png"
    labels = _blocks([0, 6])
    _save_palette_png(path, labels)
    np.testing.assert_array_equal(read_mask(path, require_object=True), labels)


@pytest.mark.parametrize("content", [b"", b"not a png at all" * 10, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_mask_file(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_mask(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_mask_file(tmp_path):
    good = tmp_path / "good.png"
    rng = np.random.default_rng(0)
    _save_palette_png(good, rng.integers(0, 5, (H, W)).astype(np.uint8))
    data = good.read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError) as info:
        read_mask(bad)
    assert str(bad) in str(info.value)


def test_missing_mask_file(tmp_path):
    with pytest.raises(InputError) as info:
        read_mask(tmp_path / "gone.png")
    assert str(tmp_path / "gone.png") in str(info.value)


# ---------------------------------------------------------------- fit_mask_to_frame


def test_fit_same_size_is_unchanged():
    labels = _blocks([0, 1, 2])
    out = fit_mask_to_frame(labels, (H, W), "m.png")
    np.testing.assert_array_equal(out, labels)


def test_fit_one_pixel_narrower_mask_is_resized_with_warning(caplog):
    labels = np.zeros((480, 853), np.uint8)
    labels[100:200, 100:300] = 3
    labels[250:400, 500:800] = 7
    labels[0:10, 0:10] = 255
    with caplog.at_level(logging.WARNING):
        out = fit_mask_to_frame(labels, (480, 854), "Annotations/seq/00005.png")
    assert out.shape == (480, 854) and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) == {0, 3, 7, 255}  # nearest neighbour: no new ids
    # Regions stay where they were (up to one column).
    assert np.all(out[100:200, 101:299] == 3)
    assert np.all(out[250:400, 501:799] == 7)
    assert abs(int((out == 3).sum()) - int((labels == 3).sum())) <= 100
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "00005.png" in warnings[0].getMessage()


def test_fit_large_mismatch_is_an_error_naming_the_file():
    labels = np.zeros((480, 768), np.uint8)  # 10% narrower than 854
    with pytest.raises(InputError) as info:
        fit_mask_to_frame(labels, (480, 854), "masks/00000.png")
    message = str(info.value)
    assert "masks/00000.png" in message
    assert "768x480" in message and "854x480" in message


def test_fit_height_mismatch_is_an_error():
    with pytest.raises(InputError):
        fit_mask_to_frame(np.zeros((432, 854), np.uint8), (480, 854), "m.png")


# ---------------------------------------------------------------- object_ids


def test_object_ids_excludes_background_and_void():
    labels = np.zeros((H, W), np.uint8)
    labels[0, :5] = [2, 5, 255, 254, 1]
    assert object_ids(labels) == (1, 2, 5, 254)
    assert object_ids(np.zeros((H, W), np.uint8)) == ()
    assert object_ids(np.full((H, W), 255, np.uint8)) == ()
    labels[:] = 9
    assert object_ids(labels) == (9,)


def test_object_ids_accepts_non_contiguous_input():
    labels = _blocks([0, 4, 8])
    assert object_ids(labels[:, ::-1]) == (4, 8)
    assert object_ids(labels[::2, ::3]) == (4, 8)
