"""Video files through PyAV: a lazy, seekable reader and an H.264 writer that keeps the fps."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Self

import av
import numpy as np

from memvos.data.atomic import atomic_path
from memvos.errors import InputError

# Containers whose timestamps after a seek do not match the demuxed ones: decode from the start.
_NO_SEEK_FORMATS = {"mpeg", "mpegts", "mpegvideo", "h264", "hevc", "m4v"}
# Demuxers that accept arbitrary files (FFmpeg reads any text as ANSI art): never a video.
_NOT_VIDEO_FORMATS = {"tty", "image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe"}
# A jump forward by fewer frames than this is decoded through instead of seeking.
_DECODE_AHEAD = 48

log = logging.getLogger(__name__)


class _Desync(Exception):
    """A seek landed somewhere the frame index cannot place."""


class VideoFrames:
    """Frames of a video file, decoded on demand (sequential access is the fast path).

    Opening demuxes the file once (no decoding) to count frames and learn their
    timestamps. ``frames[i]`` decodes forward when ``i`` is just ahead, otherwise seeks to
    the keyframe before ``i``; if the decoded timestamps cannot be placed in the index
    (open GOPs, MPEG program streams) it decodes from the start instead.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._container = self._open()
        stream = self._stream
        self.fps = float(stream.average_rate or stream.guessed_rate or 0) or None
        pts = self._index_timestamps()
        if not pts:
            self.close()
            raise InputError(self.path, "video has no frames")
        self._pts = pts
        self._warn_if_truncated(len(pts))
        self._pts_index = {p: i for i, p in enumerate(pts) if p is not None}
        self._seekable = (self._container.format.name.split(",")[0] not in _NO_SEEK_FORMATS
                          and len(self._pts_index) == len(pts))
        self.names = [f"{i:05d}" for i in range(len(pts))]
        self._size = (stream.codec_context.height, stream.codec_context.width)
        self._decoder: Iterator[av.VideoFrame] | None = None
        self._pending: av.VideoFrame | None = None  # decoded while checking a seek
        self._by_pts = False  # position from timestamps (after a seek) or by counting (from the start)
        self._next = 0

    def _open(self) -> av.container.InputContainer:
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as err:
            raise InputError(self.path, f"cannot open as a video ({err})") from None
        if not container.streams.video or container.format.name in _NOT_VIDEO_FORMATS:
            container.close()
            raise InputError(self.path, "not a video file (no video stream)")
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"
        return container

    def _index_timestamps(self) -> list[int | None]:
        """Presentation timestamps of all frames, sorted, from one demux pass."""
        pts: list[int | None] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size:
                    pts.append(packet.pts)
        except av.error.FFmpegError as err:
            raise InputError(self.path, f"corrupt video ({err})") from None
        if any(p is None for p in pts):
            return [None] * len(pts)  # no timestamps: sequential decoding only
        return sorted(pts)  # type: ignore[arg-type]

    def expected_frames(self) -> int | None:
        """The frame count the file's header promises: the stream's count, else duration x fps."""
        if self._stream.frames:
            return int(self._stream.frames)
        duration = self._container.duration  # microseconds
        if duration and self.fps:
            return round(duration / 1_000_000 * self.fps)
        return None

    def _warn_if_truncated(self, found: int) -> None:
        """A damaged or cut file holds fewer frames than its header says: say so up front."""
        expected = self.expected_frames()
        if expected is not None and found < expected - max(2, round(0.02 * expected)):
            log.warning("%s: its header promises %d frames but only %d can be read (truncated or damaged file); "
                        "segmenting those %d", self.path, expected, found, found)

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _rewind(self) -> None:
        """Decode from the first frame, counting frames."""
        self._container.seek(0)
        self._decoder = self._container.decode(self._stream)
        self._pending, self._by_pts, self._next = None, False, 0

    def _seek(self, index: int) -> None:
        """Position the decoder at the keyframe before ``index`` (or at the start)."""
        if not self._seekable or index == 0:
            self._rewind()
            return
        self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._pending, self._by_pts = None, True
        try:
            first = self._decode()
        except (InputError, _Desync):
            self._rewind()
            return
        position = self._pts_index.get(first.pts)
        if position is None or position > index:
            self._rewind()
            return
        self._pending, self._next = first, position

    def _decode(self) -> av.VideoFrame:
        assert self._decoder is not None
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        try:
            return next(self._decoder)
        except StopIteration:
            raise InputError(self.path, "video ended before its last indexed frame") from None
        except av.error.FFmpegError as err:
            raise InputError(self.path, f"cannot decode frame {self._next} ({err})") from None

    def _read(self) -> tuple[int, av.VideoFrame]:
        """Decode the next frame and its position in the video."""
        frame = self._decode()
        if self._by_pts:
            position = self._pts_index.get(frame.pts)
            if position is None:
                raise _Desync
        else:
            position = self._next
        self._next = position + 1
        return position, frame

    def __getitem__(self, index: int) -> np.ndarray:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self._decoder is None or not self._next <= index < self._next + _DECODE_AHEAD:
            self._seek(index)
        try:
            return self._decode_until(index)
        except _Desync:
            self._rewind()
            return self._decode_until(index)

    def _decode_until(self, index: int) -> np.ndarray:
        while True:
            position, frame = self._read()
            if position == index:
                return frame.to_ndarray(format="rgb24")
            if position > index:
                raise _Desync

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        self._container.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()


class VideoWriter:
    """Write RGB frames to an H.264 mp4 (yuv420p), atomically: nothing appears on failure.

    Odd frame sizes are padded by one pixel, as yuv420p needs even dimensions.
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 20) -> None:
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self._atomic = atomic_path(self.path)
        self._tmp: Path | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None

    def __enter__(self) -> Self:
        self._tmp = self._atomic.__enter__()
        try:
            self._container = av.open(str(self._tmp), mode="w", format="mp4")
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        assert self._container is not None, "use VideoWriter as a context manager"
        h, w = frame.shape[:2]
        if self._stream is not None and (h + h % 2, w + w % 2) != (self._stream.height, self._stream.width):
            raise ValueError(f"{self.path}: frame is {w}x{h}, earlier frames were "
                             f"{self._stream.width}x{self._stream.height}")
        if self._stream is None:
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        if w % 2 or h % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Flush the encoder and rename into place; on any error remove the temporary file."""
        assert self._container is not None
        error = exc
        try:
            if error is None and self._stream is None:
                error = ValueError(f"{self.path}: no frames were written")
            elif error is None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        except Exception as err:  # noqa: BLE001 - re-raised below after clean-up
            error = err
        finally:
            self._container.close()
        self._atomic.__exit__(type(error) if error else None, error, None)
        if error is not None and error is not exc:
            raise error
        return False


def write_video(path: str | Path, frames, fps: float) -> None:
    """Write an iterable of RGB frames to ``path`` as H.264 mp4."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
