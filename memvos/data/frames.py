"""Lazy frame sources: a folder of images or a video file, one decoded frame in memory at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from natsort import natsorted
from PIL import Image, UnidentifiedImageError

from memvos.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v", ".mpg", ".mpeg")


@runtime_checkable
class FrameSource(Protocol):
    """What every frame source offers: length, random access and names for outputs."""

    path: Path
    names: Sequence[str]  # one stem per frame, used to name output masks
    fps: float | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...  # (H, W, 3) uint8 RGB

    def __iter__(self) -> Iterator[np.ndarray]: ...

    @property
    def size(self) -> tuple[int, int]: ...  # (height, width)


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` in natural order (``2.jpg`` before ``10.jpg``)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return natsorted(files, key=lambda p: p.name)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any Pillow image; 16-bit and 32-bit integer greyscale (``I;16``, ``I``)
    is scaled from its 16-bit range (Pillow's own conversion clips it to white)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im).astype(np.float64)
        grey = np.clip(np.round(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        grey = np.asarray(im).astype(np.float64)
        scale = 255.0 if grey.max(initial=0) <= 1.0 else 1.0
        return np.repeat(np.clip(np.round(grey * scale), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def read_rgb(path: Path) -> np.ndarray:
    """Read one image as (H, W, 3) uint8 RGB, or raise a one-line InputError."""
    try:
        with Image.open(path) as im:
            im.load()
            return _to_rgb8(im)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(path, f"unreadable or corrupt image ({err})") from None


class FolderFrames:
    """Frames stored as image files in one folder, decoded on access."""

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        self.path = Path(folder)
        if not self.path.exists():
            raise InputError(self.path, "folder not found")
        if not self.path.is_dir():
            raise InputError(self.path, "not a folder")
        self.files = list_images(self.path)
        if not self.files:
            raise InputError(self.path, f"no image frames ({', '.join(IMAGE_SUFFIXES)}) in folder")
        self.names = [p.stem for p in self.files]
        if len(set(self.names)) != len(self.names):
            raise InputError(self.path, "several frames share a name (e.g. 00001.jpg and 00001.png)")
        self.fps = fps
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def size(self) -> tuple[int, int]:
        if self._size is None:
            try:
                with Image.open(self.files[0]) as im:
                    self._size = (im.height, im.width)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                raise InputError(self.files[0], f"unreadable or corrupt image ({err})") from None
        return self._size

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.files[index]
        frame = read_rgb(path)
        if frame.shape[:2] != self.size:
            h, w = self.size
            raise InputError(path, f"frame is {frame.shape[1]}x{frame.shape[0]} but the first frame is {w}x{h}")
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]


def open_frames(path: str | Path) -> FrameSource:
    """Open a frame folder or a video file as a lazy frame source."""
    path = Path(path)
    if path.is_dir():
        return FolderFrames(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(path, f"not a frame folder or a video file ({', '.join(VIDEO_SUFFIXES)})")
    from memvos.data.video import VideoFrames  # PyAV is imported only when a video is used

    return VideoFrames(path)
