"""Video files through PyAV: a lazy, seekable reader and an H.264 writer that keeps the fps."""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from memvos.data.atomic import atomic_path
from memvos.errors import InputError


class VideoFrames:
    """Frames of a video file, decoded on demand (sequential access is the fast path).

    Opening demuxes the file once (no decoding) to count frames and learn their
    timestamps, so that ``frames[i]`` can seek to the right keyframe.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._container = self._open()
        stream = self._stream
        self.fps = float(stream.average_rate or stream.guessed_rate or 0) or None
        self._pts = self._index_timestamps()
        if not self._pts:
            self.close()
            raise InputError(self.path, "video has no frames")
        self.names = [f"{i:05d}" for i in range(len(self._pts))]
        self._size = (stream.codec_context.height, stream.codec_context.width)
        self._decoder: Iterator[av.VideoFrame] | None = None
        self._next = 0

    def _open(self) -> av.container.InputContainer:
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as err:
            raise InputError(self.path, f"cannot open as a video ({err})") from None
        if not container.streams.video:
            container.close()
            raise InputError(self.path, "file has no video stream")
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

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _restart(self, index: int) -> None:
        """Position the decoder so that the next decoded frame is at or before ``index``."""
        target = self._pts[index]
        if target is None or index == 0:
            self._container.seek(0)
        else:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._next = None  # unknown until a frame's pts is seen

    def _decode_next(self) -> av.VideoFrame:
        assert self._decoder is not None
        try:
            return next(self._decoder)
        except StopIteration:
            raise InputError(self.path, "video ended before its last indexed frame") from None
        except av.error.FFmpegError as err:
            raise InputError(self.path, f"cannot decode frame {self._next} ({err})") from None

    def __getitem__(self, index: int) -> np.ndarray:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self._decoder is None or self._next != index:
            self._restart(index)
        target = self._pts[index]
        while True:
            frame = self._decode_next()
            if self._next is None:  # just seeked: find where we are from the timestamp
                known = target is not None and frame.pts is not None
                self._next = bisect.bisect_left(self._pts, frame.pts) if known else 0
            current = self._next
            self._next += 1
            if current == index:
                return frame.to_ndarray(format="rgb24")

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

    def __enter__(self) -> VideoWriter:
        self._tmp = self._atomic.__enter__()
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        assert self._container is not None, "use VideoWriter as a context manager"
        h, w = frame.shape[:2]
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

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._container is not None
        try:
            if exc_type is None and self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
        if exc_type is None and self._stream is None:
            exc_type, exc = ValueError, ValueError(f"{self.path}: no frames were written")
            self._atomic.__exit__(exc_type, exc, None)
            raise exc
        self._atomic.__exit__(exc_type, exc, tb)


def write_video(path: str | Path, frames, fps: float) -> None:
    """Write an iterable of RGB frames to ``path`` as H.264 mp4."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
