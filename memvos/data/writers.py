"""Writers for segmentation results: palette PNGs, per-object PNGs, RGBA cut-outs, overlays.

Every file is written to a temporary name and renamed, so a crash never leaves a
half-written PNG behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from memvos.data.atomic import atomic_path
from memvos.data.masks import object_ids
from memvos.data.palette import davis_palette, palette_bytes


def _save_image(image: Image.Image, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def write_palette_png(path: str | Path, labels: np.ndarray) -> None:
    """Save an (H, W) label map as a palette PNG with the DAVIS palette (index = object id)."""
    if labels.ndim != 2:
        raise ValueError(f"{path}: label map must be 2-D, got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
            raise ValueError(f"{path}: label values must be in 0..255")
        labels = labels.astype(np.uint8)
    image = Image.fromarray(labels, mode="P")
    image.putpalette(palette_bytes())
    _save_image(image, path)


def write_object_pngs(folder: str | Path, name: str, labels: np.ndarray, ids: Iterable[int]) -> None:
    """Save one binary (0/255, L-mode) PNG per object: ``folder/<id>/<name>.png``."""
    for obj in ids:
        binary = np.where(labels == obj, 255, 0).astype(np.uint8)
        _save_image(Image.fromarray(binary, mode="L"), Path(folder) / str(obj) / f"{name}.png")


def cutout_rgba(frame: np.ndarray, labels: np.ndarray, ids: Iterable[int] | None = None) -> np.ndarray:
    """(H, W, 4) uint8: the frame's pixels where an object (of ``ids``, default all) is, else transparent."""
    keep = labels_in(labels, object_ids(labels) if ids is None else tuple(ids))
    alpha = np.where(keep, 255, 0).astype(np.uint8)
    rgb = np.where(keep[..., None], frame, 0).astype(np.uint8)
    return np.dstack([rgb, alpha])


def write_cutout(path: str | Path, frame: np.ndarray, labels: np.ndarray, ids: Iterable[int] | None = None) -> None:
    """Save the RGBA cut-out of the objects in ``ids`` (default: all) as a PNG."""
    _save_image(Image.fromarray(cutout_rgba(frame, labels, ids), mode="RGBA"), path)


def labels_in(labels: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    """Boolean map of the pixels whose label is one of ``ids``."""
    lut = np.zeros(256, dtype=bool)
    lut[list(ids)] = True
    return lut[labels]


def render_overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5, outline: int = 2) -> np.ndarray:
    """Frame with translucent palette colours on each object and a solid outline around it."""
    palette = davis_palette()
    out = frame.astype(np.float32)
    objects = (labels > 0) & (labels != 255)
    colours = palette[labels].astype(np.float32)
    out[objects] = (1 - alpha) * out[objects] + alpha * colours[objects]
    if outline > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outline + 1, 2 * outline + 1))
        edges = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, kernel) > 0
        inner = edges & objects
        out[inner] = colours[inner]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
