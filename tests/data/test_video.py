"""VideoWriter / write_video / VideoFrames: round trip, fps, random access, padding, atomic writes."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from memvos.data.synthetic import make_synthetic_clip
from memvos.data.video import VideoFrames, VideoWriter, write_video
from memvos.errors import InputError

H, W = 64, 96


@pytest.fixture(scope="module")
def clip():
    """A textured synthetic clip whose frames all differ (moving shapes over a texture)."""
    return make_synthetic_clip(n_frames=12, size=(H, W), n_objects=2, seed=3)


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("fps", [15, 12.5])
def test_round_trip_count_size_fps_content(tmp_path, clip, fps):
    path = tmp_path / "clip.mp4"
    write_video(path, clip.frames, fps=fps)
    assert _listing(tmp_path) == ["clip.mp4"]  # no temporary left next to it
    video = VideoFrames(path)
    try:
        assert len(video) == len(clip.frames)
        assert video.size == (H, W)
        assert video.fps == pytest.approx(fps, rel=1e-6)
        assert video.names == [f"{i:05d}" for i in range(len(clip.frames))]
        assert video.path == path
        decoded = list(video)
        assert len(decoded) == len(clip.frames)
        for original, frame in zip(clip.frames, decoded):
            assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
            assert _mae(original, frame) < 12
        # Frames come back in order: each is closest to its own original.
        for i, frame in enumerate(decoded):
            errors = [_mae(original, frame) for original in clip.frames]
            assert int(np.argmin(errors)) == i
    finally:
        video.close()


def test_writer_context_manager_and_crf(tmp_path, clip):
    high = tmp_path / "high.mp4"
    low = tmp_path / "low.mp4"
    with VideoWriter(high, fps=10, crf=12) as writer:
        for frame in clip.frames:
            writer.write(frame)
    with VideoWriter(low, fps=10, crf=40) as writer:
        for frame in clip.frames:
            writer.write(frame)
    # A higher crf means lower quality and a smaller file.
    assert low.stat().st_size < high.stat().st_size
    high_err = np.mean([_mae(a, b) for a, b in zip(clip.frames, VideoFrames(high))])
    low_err = np.mean([_mae(a, b) for a, b in zip(clip.frames, VideoFrames(low))])
    assert high_err < low_err


def test_write_video_accepts_a_generator(tmp_path, clip):
    path = tmp_path / "gen.mp4"
    write_video(path, (f for f in clip.frames[:5]), fps=8)
    assert len(VideoFrames(path)) == 5


# ---------------------------------------------------------------- random access


def _check_random_access(path, order):
    sequential = list(VideoFrames(path))
    video = VideoFrames(path)
    for i in order:
        np.testing.assert_array_equal(video[i], sequential[i], err_msg=f"frame {i}")
    return sequential, video


def test_random_access_equals_sequential(tmp_path, clip):
    path = tmp_path / "clip.mp4"
    write_video(path, clip.frames, fps=15)
    last = len(clip.frames) - 1
    sequential, video = _check_random_access(path, [7, 2, 3, 0, last, 5, 5, 6, last, 1])
    np.testing.assert_array_equal(video[-1], sequential[last])
    np.testing.assert_array_equal(video[-len(sequential)], sequential[0])
    with pytest.raises(IndexError):
        video[len(sequential)]
    with pytest.raises(IndexError):
        video[-len(sequential) - 1]
    # Iterating after random access still yields every frame, in order.
    for i, frame in enumerate(video):
        np.testing.assert_array_equal(frame, sequential[i])


def _write_with_keyframes(path, frames, fps, gop, bframes):
    """A video with several keyframes (and B-frames), written with PyAV directly."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": str(bframes),
                          "crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("bframes", [0, 2])
def test_random_access_across_keyframes(tmp_path, bframes):
    frames = make_synthetic_clip(n_frames=20, size=(H, W), seed=5).frames
    path = tmp_path / "gop.mp4"
    _write_with_keyframes(path, frames, fps=10, gop=4, bframes=bframes)
    with av.open(str(path)) as container:
        keyframes = sum(p.is_keyframe for p in container.demux(video=0) if p.size)
    assert keyframes >= 4  # the seek path is really exercised
    sequential, _video = _check_random_access(path, [13, 2, 19, 7, 3, 0, 8, 4, 19, 12, 11])
    assert len(sequential) == 20
    for original, frame in zip(frames, sequential):
        assert _mae(original, frame) < 12


def _write_open_gop(path, frames, codec, fmt):
    """B-frames that follow a keyframe in decoding order but show before it (open GOP), as in
    MPEG-2 .mpg files, MPEG-4 part 2 and many camera/phone videos."""
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = 5
        stream.codec_context.max_b_frames = 2
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("codec, fmt, suffix", [("mpeg4", "mp4", ".mp4"), ("mpeg2video", "mpeg", ".mpg")])
def test_random_access_with_open_gop(tmp_path, codec, fmt, suffix):
    frames = make_synthetic_clip(n_frames=30, size=(H, W), seed=5).frames
    path = tmp_path / f"open_gop{suffix}"
    _write_open_gop(path, frames, codec, fmt)
    sequential = list(VideoFrames(path))
    assert len(sequential) == 30
    for i in range(30):  # a fresh reader per frame: every access starts with a seek
        np.testing.assert_array_equal(VideoFrames(path)[i], sequential[i], err_msg=f"frame {i}")


# ---------------------------------------------------------------- odd sizes


def test_odd_frame_size_is_padded_to_even(tmp_path):
    frames = make_synthetic_clip(n_frames=4, size=(33, 45), seed=1).frames
    path = tmp_path / "odd.mp4"
    write_video(path, frames, fps=10)
    video = VideoFrames(path)
    assert video.size == (34, 46)
    decoded = list(video)
    assert len(decoded) == 4
    for original, frame in zip(frames, decoded):
        assert frame.shape == (34, 46, 3)
        assert _mae(original, frame[:33, :45]) < 12
        # The padding repeats the edge row / column.
        assert _mae(frame[33], frame[32]) < 12
        assert _mae(frame[:, 45], frame[:, 44]) < 12


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("content", [b"", b"definitely not a video\n" * 50, bytes(range(256)) * 16])
def test_non_video_file(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        VideoFrames(path)
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_missing_video_file(tmp_path):
    with pytest.raises(InputError) as info:
        VideoFrames(tmp_path / "gone.mp4")
    assert str(tmp_path / "gone.mp4") in str(info.value)


# ---------------------------------------------------------------- atomic writing


class Boom(RuntimeError):
    pass


def test_writer_leaves_nothing_on_exception(tmp_path, clip):
    path = tmp_path / "out.mp4"
    with pytest.raises(Boom), VideoWriter(path, fps=12) as writer:
        for frame in clip.frames[:5]:
            writer.write(frame)
        raise Boom()
    assert not path.exists()
    assert _listing(tmp_path) == []


def test_writer_exception_before_any_frame(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(Boom), VideoWriter(path, fps=12):
        raise Boom()
    assert _listing(tmp_path) == []


def test_writer_exception_keeps_previous_video(tmp_path, clip):
    path = tmp_path / "out.mp4"
    write_video(path, clip.frames[:3], fps=12)
    before = path.read_bytes()
    with pytest.raises(Boom), VideoWriter(path, fps=12) as writer:
        writer.write(clip.frames[0])
        raise Boom()
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["out.mp4"]


def test_writer_without_frames_is_an_error(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(ValueError) as info:
        write_video(path, [], fps=12)
    assert str(path) in str(info.value)
    assert _listing(tmp_path) == []


def test_writer_refuses_a_frame_of_another_size_and_leaves_nothing(tmp_path):
    out = tmp_path / "mixed.mp4"
    with pytest.raises(ValueError, match="48x30"), VideoWriter(out, fps=10) as writer:
        writer.write(np.zeros((32, 48, 3), np.uint8))
        writer.write(np.zeros((30, 48, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_video_says_so_when_opened(tmp_path, caplog):
    import logging

    path = tmp_path / "full.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(40):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with caplog.at_level(logging.WARNING):
        assert len(VideoFrames(path)) == 40
    assert "header promises" not in caplog.text
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.75)])
    with caplog.at_level(logging.WARNING):
        frames = VideoFrames(cut)
    assert 0 < len(frames) < 40
    assert f"header promises 40 frames but only {len(frames)} can be read" in caplog.text
    assert frames[len(frames) - 1].shape == (64, 96, 3)  # what is there still decodes
