"""Export a session's masks as one zip: palette PNGs, per-object PNGs, RGBA cut-outs, overlay mp4.
Everything is written with memvos' own writers into a temporary folder, then zipped to a
temporary name and renamed, so a failed export leaves nothing behind."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from memvos.data.atomic import atomic_path
from memvos.data.video import VideoWriter
from memvos.data.writers import render_overlay, write_cutout, write_object_pngs, write_palette_png
from memvos.errors import InputError

KINDS = ("palette", "objects", "cutouts", "overlay")
DEFAULT_FPS = 24.0


def parse_kinds(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """The requested kinds ("palette,objects" or a list); default: palette PNGs only."""
    if text is None or text == "":
        return ("palette",)
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = tuple(dict.fromkeys(k.strip() for k in items if k.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise InputError(None, f"unknown export kind(s) {unknown or items}; choose from {', '.join(KINDS)}")
    return kinds


def export_zip(zip_path: Path, frames, names: list[str], mask: Callable[[int], object],
               object_ids: tuple[int, ...], kinds: tuple[str, ...], fps: float | None = None,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``zip_path`` holding ``masks/<frame>.png`` (palette), ``objects/<id>/<frame>.png``,
    ``cutouts/<frame>.png`` (RGBA) and ``overlay.mp4``, as ``kinds`` asks."""
    total = len(names)
    with tempfile.TemporaryDirectory(prefix="memvos-export-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        video = None
        if "overlay" in kinds:
            video = stack.enter_context(VideoWriter(root / "overlay.mp4", fps or DEFAULT_FPS))
        for t, name in enumerate(names):
            labels = mask(t)
            if "palette" in kinds:
                write_palette_png(root / "masks" / f"{name}.png", labels)
            if "objects" in kinds:
                write_object_pngs(root / "objects", name, labels, object_ids)
            if "cutouts" in kinds or video is not None:
                frame = frames[t]
                if "cutouts" in kinds:
                    write_cutout(root / "cutouts" / f"{name}.png", frame, labels)
                if video is not None:
                    video.write(render_overlay(frame, labels))
            if progress is not None:
                progress(t + 1, total)
        stack.close()  # the video is finished before it is zipped
        _zip_folder(root, zip_path)
    return zip_path


def _zip_folder(folder: Path, zip_path: Path) -> None:
    """Zip every file under ``folder`` (PNG and mp4 are compressed already: stored)."""
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())


def remove_quietly(path: Path) -> None:
    """Delete a finished download's temporary folder."""
    shutil.rmtree(path, ignore_errors=True)
