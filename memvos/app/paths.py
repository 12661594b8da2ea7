"""The folders the web app may read: every path is resolved (symlinks followed) and must lie
inside one of the allowed roots, so `../`, absolute paths and symlinks pointing out are refused."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from memvos.data.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_images
from memvos.errors import InputError

MAX_LISTED = 2000  # entries listed per folder: a huge folder must not stall the page


class PathRefused(Exception):
    """A path outside the allowed roots (HTTP 403); ``str()`` is a one-line message."""


@dataclass(frozen=True)
class Entry:
    """One listed item: a sub-folder (maybe a frame folder) or a video file."""

    name: str
    path: str
    kind: str  # "dir" (browse only), "frames" (a frame folder: open or browse) or "video"
    frames: int | None = None  # image count of a frame folder

    def as_json(self) -> dict:
        return {"name": self.name, "path": self.path, "kind": self.kind, "frames": self.frames}


class Roots:
    """The allowed roots; ``resolve`` is the only way the app turns a client's string into a path."""

    def __init__(self, roots: list[str | Path]) -> None:
        if not roots:
            raise InputError(None, "give at least one --root folder")
        resolved = []
        for root in roots:
            path = Path(root).expanduser()
            if not path.is_dir():
                raise InputError(path, "--root is not a folder")
            resolved.append(path.resolve())
        self.paths = tuple(dict.fromkeys(resolved))

    def resolve(self, text: str) -> Path:
        """The real path of ``text`` (absolute, or relative to the first root) if it exists inside
        a root; else PathRefused (outside) or FileNotFoundError (inside but missing)."""
        if not isinstance(text, str) or not text or "\x00" in text:
            raise PathRefused("empty or malformed path")
        given = Path(text)
        candidate = given if given.is_absolute() else self.paths[0] / given
        real = Path(os.path.realpath(candidate))  # follows every symlink, even when the end is missing
        if not self.contains(real):
            raise PathRefused(f"{text}: outside the allowed folders")
        if not real.exists():
            raise FileNotFoundError(f"{text}: no such file or folder")
        return real

    def check_frames(self, folder: Path) -> None:
        """Refuse a frame folder whose images link outside the roots (their content would leak)."""
        if folder.is_dir():
            for image in list_images(folder):
                if not self.contains(Path(os.path.realpath(image))):
                    raise PathRefused(f"{image}: links outside the allowed folders")

    def contains(self, real: Path) -> bool:
        """Whether a resolved path is one of the roots or inside one."""
        return any(real == root or real.is_relative_to(root) for root in self.paths)

    def listing(self, text: str | None) -> dict:
        """JSON of a folder's openable items (sub-folders, frame folders, videos); no path: the roots."""
        if not text:
            entries = [describe(root, str(root)) for root in self.paths]
            return {"path": None, "parent": None, "entries": [e.as_json() for e in entries if e]}
        folder = self.resolve(text)
        if not folder.is_dir():
            raise NotADirectoryError(f"{text}: not a folder")
        entries = []
        for child in sorted(_children(folder), key=lambda p: p.name.lower())[:MAX_LISTED]:
            real = Path(os.path.realpath(child))
            if self.contains(real):  # a symlink pointing out is not even listed
                entry = describe(real, child.name)
                if entry is not None:
                    entries.append(entry)
        parent = None if folder in self.paths else str(folder.parent)
        return {"path": str(folder), "parent": parent, "entries": [e.as_json() for e in entries]}


def _children(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError as err:
        raise PermissionError(f"{folder}: cannot list ({err.strerror})") from None


def describe(path: Path, name: str) -> Entry | None:
    """An Entry for a folder or a video file; None for anything the app cannot open."""
    try:
        if path.is_dir():
            count = count_images(path)
            return Entry(name, str(path), "frames" if count else "dir", count or None)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            return Entry(name, str(path), "video")
    except OSError:
        return None
    return None


def count_images(folder: Path) -> int:
    """Image files directly in ``folder`` (0 when unreadable)."""
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
                       and e.is_file())
    except OSError:
        return 0
