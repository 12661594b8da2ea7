"""FolderFrames / open_frames: natural order, lazy decoding, and one-line errors naming the path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from memvos.data.frames import FolderFrames, list_images, open_frames, read_rgb
from memvos.errors import InputError

H, W = 64, 96


def _frame(value: int, size=(H, W)) -> np.ndarray:
    """A frame whose content identifies it: a flat colour plus a gradient."""
    h, w = size
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = value
    frame[..., 1] = np.arange(w, dtype=np.uint8)[None, :]
    frame[..., 2] = np.arange(h, dtype=np.uint8)[:, None]
    return frame


def _save(path, frame):
    Image.fromarray(frame).save(path)


def _folder_of_pngs(folder, stems, size=(H, W)):
    folder.mkdir(parents=True, exist_ok=True)
    frames = {}
    for k, stem in enumerate(stems):
        frames[stem] = _frame(10 * k + 5, size)
        _save(folder / f"{stem}.png", frames[stem])
    return frames


# ---------------------------------------------------------------- order, names, size, content


def test_natural_order_names_and_content(tmp_path):
    # Written in a shuffled order; lexicographic order would be 1, 10, 100, 2, 9.
    stems = ["10", "2", "100", "1", "9"]
    frames = _folder_of_pngs(tmp_path / "f", stems)
    source = FolderFrames(tmp_path / "f")
    assert list(source.names) == ["1", "2", "9", "10", "100"]
    assert [p.name for p in source.files] == ["1.png", "2.png", "9.png", "10.png", "100.png"]
    assert len(source) == 5
    for i, name in enumerate(source.names):
        np.testing.assert_array_equal(source[i], frames[name])
    assert source.size == (H, W)
    assert source.fps is None
    assert source.path == tmp_path / "f"


def test_natural_order_with_jpg(tmp_path):
    folder = tmp_path / "jpg"
    folder.mkdir()
    for stem in ["10", "2", "1"]:
        Image.fromarray(_frame(int(stem) * 20)).save(folder / f"{stem}.jpg", quality=95)
    source = FolderFrames(folder)
    assert list(source.names) == ["1", "2", "10"]
    # Decoded frames are in that order: the red channel encodes the stem.
    reds = [float(source[i][..., 0].mean()) for i in range(3)]
    assert reds == pytest.approx([20, 40, 200], abs=3)


def test_frames_are_rgb_uint8_and_iteration_matches_indexing(tmp_path):
    _folder_of_pngs(tmp_path / "f", ["a", "b", "c"])
    # A grey (L) and a palette frame in the same folder also come out as RGB.
    Image.fromarray(np.full((H, W), 77, np.uint8), mode="L").save(tmp_path / "f" / "d.png")
    source = FolderFrames(tmp_path / "f")
    frames = list(source)
    assert len(frames) == 4
    for i, frame in enumerate(frames):
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, source[i])
    np.testing.assert_array_equal(frames[3], np.full((H, W, 3), 77, np.uint8))
    np.testing.assert_array_equal(source[-1], frames[-1])


def test_non_image_files_are_ignored(tmp_path):
    _folder_of_pngs(tmp_path / "f", ["00000", "00001"])
    (tmp_path / "f" / "notes.txt").write_text("not a frame")
    (tmp_path / "f" / "sub.jpg").mkdir()  # a folder with an image suffix is not a frame
    (tmp_path / "f" / "UPPER.JPG").write_bytes(b"")
    names = [p.name for p in list_images(tmp_path / "f")]
    assert names == ["00000.png", "00001.png", "UPPER.JPG"]  # suffix match ignores case


def test_fps_is_passed_through(tmp_path):
    _folder_of_pngs(tmp_path / "f", ["0"])
    assert FolderFrames(tmp_path / "f", fps=24.0).fps == 24.0


def test_access_is_lazy(tmp_path):
    frames = _folder_of_pngs(tmp_path / "f", ["0", "1", "2"])
    (tmp_path / "f" / "3.jpg").write_bytes(b"garbage, not a jpeg")
    # Opening does not decode: the corrupt last frame is not noticed yet.
    source = FolderFrames(tmp_path / "f")
    assert len(source) == 4
    np.testing.assert_array_equal(source[1], frames["1"])
    # Each access reads the file anew: a change on disk is seen by the next access.
    _save(tmp_path / "f" / "2.png", _frame(250))
    np.testing.assert_array_equal(source[2], _frame(250))
    with pytest.raises(InputError):
        source[3]


# ---------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(InputError) as info:
        FolderFrames(missing)
    assert str(missing) in str(info.value)
    assert info.value.path == missing
    assert "\n" not in str(info.value)


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "frame.png"
    _save(path, _frame(1))
    with pytest.raises(InputError) as info:
        FolderFrames(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [[], ["readme.txt"]])
def test_folder_without_frames(tmp_path, content):
    folder = tmp_path / "empty"
    folder.mkdir()
    for name in content:
        (folder / name).write_text("x")
    with pytest.raises(InputError) as info:
        FolderFrames(folder)
    assert str(folder) in str(info.value)
    assert info.value.path == folder


def test_duplicate_stems(tmp_path):
    _folder_of_pngs(tmp_path / "f", ["00001"])
    Image.fromarray(_frame(3)).save(tmp_path / "f" / "00001.jpg")
    with pytest.raises(InputError) as info:
        FolderFrames(tmp_path / "f")
    assert str(tmp_path / "f") in str(info.value)


def test_corrupt_frame_names_the_file(tmp_path):
    _folder_of_pngs(tmp_path / "f", ["00000", "00002"])
    bad = tmp_path / "f" / "00001.jpg"
    bad.write_bytes(b"\x00\x01 this is not a jpeg at all" * 10)
    source = FolderFrames(tmp_path / "f")
    source[0]
    with pytest.raises(InputError) as info:
        source[1]
    assert info.value.path == bad
    assert str(bad) in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError):
        list(source)


def test_truncated_jpeg_names_the_file(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(_frame(1)).save(folder / "0.jpg", quality=95)
    good = (folder / "0.jpg").read_bytes()
    (folder / "1.jpg").write_bytes(good[: len(good) // 2])  # valid header, cut in the middle
    source = FolderFrames(folder)
    with pytest.raises(InputError) as info:
        source[1]
    assert str(folder / "1.jpg") in str(info.value)


def test_corrupt_first_frame_size(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "0.jpg").write_bytes(b"garbage")
    _save(folder / "1.png", _frame(1))
    source = FolderFrames(folder)
    with pytest.raises(InputError) as info:
        _ = source.size
    assert str(folder / "0.jpg") in str(info.value)


def test_frame_with_a_different_size(tmp_path):
    _folder_of_pngs(tmp_path / "f", ["0", "1"])
    odd = tmp_path / "f" / "2.png"
    _save(odd, _frame(9, size=(H, W + 2)))
    source = FolderFrames(tmp_path / "f")
    assert source.size == (H, W)
    source[1]
    with pytest.raises(InputError) as info:
        source[2]
    assert info.value.path == odd
    message = str(info.value)
    assert str(odd) in message
    assert f"{W + 2}x{H}" in message and f"{W}x{H}" in message


def test_read_rgb_missing_file(tmp_path):
    with pytest.raises(InputError) as info:
        read_rgb(tmp_path / "gone.png")
    assert str(tmp_path / "gone.png") in str(info.value)


# ---------------------------------------------------------------- open_frames


def test_open_frames_folder(tmp_path):
    frames = _folder_of_pngs(tmp_path / "f", ["0", "1"])
    source = open_frames(tmp_path / "f")
    assert isinstance(source, FolderFrames)
    np.testing.assert_array_equal(source[1], frames["1"])
    # a plain string works too
    assert len(open_frames(str(tmp_path / "f"))) == 2


def test_open_frames_video_file(tmp_path):
    from memvos.data.video import VideoFrames, write_video

    path = tmp_path / "clip.mp4"
    write_video(path, [_frame(40 * k) for k in range(4)], fps=10)
    source = open_frames(path)
    assert isinstance(source, VideoFrames)
    assert len(source) == 4
    assert source.size == (H, W)
    assert source.fps == pytest.approx(10)


def test_open_frames_missing_path(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(InputError) as info:
        open_frames(missing)
    assert str(missing) in str(info.value)
    assert info.value.path == missing


@pytest.mark.parametrize("content", [b"hello, I am not a video\n" * 20, bytes(range(256)) * 20])
def test_open_frames_non_video_file(tmp_path, content):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        open_frames(path)
    assert str(path) in str(info.value)
    assert info.value.path == path


def test_open_frames_text_file_is_not_a_video(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a video\n" * 20)
    with pytest.raises(InputError):
        open_frames(path)


def test_16_bit_frames_are_scaled_not_clipped_to_white(tmp_path):
    import cv2

    grey = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
    cv2.imwrite(str(tmp_path / "grey16.png"), grey)
    colour = np.stack([grey, grey // 2, 65535 - grey], -1)
    cv2.imwrite(str(tmp_path / "rgb16.png"), colour[..., ::-1])  # OpenCV writes BGR
    out = read_rgb(tmp_path / "grey16.png")
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    np.testing.assert_allclose(out[..., 0], grey / 257, atol=1)
    assert out.min() == 0 and 240 < out.max() < 255  # a ramp, not all white
    np.testing.assert_allclose(read_rgb(tmp_path / "rgb16.png"), colour / 257, atol=1)
