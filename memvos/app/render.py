"""Images the page shows (frame JPEGs, overlay layers, label PNGs) and what it sends back
(polylines rasterised at the frame size, uploaded stroke bitmaps and masks decoded)."""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from memvos.data.masks import MAX_SIZE_MISMATCH, fit_mask_to_frame, read_mask
from memvos.data.palette import VOID_ID, davis_palette, palette_bytes
from memvos.data.scribbles import stroke_width_for
from memvos.errors import InputError

MAX_POINTS = 200_000  # points per request: a stroke is a few hundred


def jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def palette_png(labels: np.ndarray) -> bytes:
    """(H, W) uint8 labels -> palette PNG bytes (DAVIS palette; index = object id)."""
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    image.putpalette(palette_bytes())
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def overlay_layer(labels: np.ndarray, alpha: float = 0.5, outline: int = 2) -> bytes:
    """RGBA PNG to draw over the frame: translucent palette colours on objects, solid outlines,
    transparent background (as ``render_overlay`` draws them, so the page matches the export)."""
    objects = (labels > 0) & (labels != VOID_ID)
    rgba = np.zeros((*labels.shape, 4), np.uint8)
    rgba[..., :3] = davis_palette()[labels]
    rgba[..., 3] = np.where(objects, round(255 * alpha), 0)
    if outline > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outline + 1, 2 * outline + 1))
        edges = (cv2.morphologyEx(np.ascontiguousarray(labels), cv2.MORPH_GRADIENT, kernel) > 0) & objects
        rgba[..., 3][edges] = 255
    out = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(out, format="PNG", compress_level=1)
    return out.getvalue()


STROKE_COLOURS = ((60, 255, 120, 230), (255, 70, 70, 230))  # positive, negative: as the page draws them


def strokes_layer(marks: np.ndarray | None, shape: tuple[int, int]) -> bytes:
    """RGBA PNG of the open round's marks ((2, H, W) bool: positive, negative; None: none)."""
    rgba = np.zeros((*shape, 4), np.uint8)
    if marks is not None:
        for mark, colour in zip(marks, STROKE_COLOURS):
            rgba[mark] = colour
    out = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(out, format="PNG", compress_level=1)
    return out.getvalue()


def stroke_radius(shape: tuple[int, int]) -> int:
    """Radius of a drawn stroke in frame pixels (the robot's width: 3 px at 480p)."""
    return stroke_width_for(shape)


def rasterise(polylines: Sequence[Sequence[Sequence[float]]], shape: tuple[int, int],
              radius: int | None = None) -> np.ndarray | None:
    """bool (H, W) map of polylines given as [[x, y], ...] in frame pixels, drawn ``radius`` wide;
    None when there are none. A single point is a dot."""
    if not polylines:
        return None
    h, w = shape
    radius = stroke_radius(shape) if radius is None else radius
    canvas = np.zeros((h, w), np.uint8)
    count = 0
    for line in polylines:
        points = _points(line)
        count += len(points)
        if count > MAX_POINTS:
            raise InputError(None, f"strokes have more than {MAX_POINTS} points")
        if len(points) == 1:
            cv2.circle(canvas, tuple(points[0]), radius, 1, thickness=-1)
        else:
            cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, 1, thickness=2 * radius + 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def _points(line) -> np.ndarray:
    """(N, 2) int32 points of one polyline, or a one-line InputError."""
    try:
        array = np.asarray(line, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(None, "a stroke must be a list of [x, y] points") from None
    if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise InputError(None, "a stroke must be a non-empty list of [x, y] points")
    if not np.isfinite(array).all() or np.abs(array).max() > 1e6:
        raise InputError(None, "stroke coordinates must be finite numbers of pixels")
    return np.round(array).astype(np.int32)


def check_upload_size(data: bytes, name: str, shape: tuple[int, int], tolerance: float = 0.0) -> None:
    """Refuse, from the image header alone (before any pixel is decoded), an upload that is not
    an image or whose size is not the frame's (within ``tolerance``): a small file can announce
    a huge image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            w, h = image.size
    except Image.DecompressionBombError as err:
        raise InputError(name, f"image too large ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise InputError(name, f"unreadable image ({err})") from None
    if abs(h - shape[0]) > tolerance * shape[0] or abs(w - shape[1]) > tolerance * shape[1]:
        raise InputError(name, f"image is {w}x{h}, the video is {shape[1]}x{shape[0]}")


def decode_mask_upload(data: bytes, filename: str, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 labels of an uploaded mask (palette, binary or RGB, as ``read_mask`` reads
    files), fitted to the frame size; errors name the uploaded file."""
    name = Path(filename or "mask.png").name
    check_upload_size(data, name, shape, tolerance=MAX_SIZE_MISMATCH)
    with tempfile.TemporaryDirectory(prefix="memvos-upload-") as tmp:
        path = Path(tmp) / (name if Path(name).suffix else f"{name}.png")
        path.write_bytes(data)
        try:
            labels = read_mask(path)
            return fit_mask_to_frame(labels, shape, path)
        except InputError as err:
            raise InputError(name, err.problem) from None


def decode_stroke_upload(data: bytes, filename: str, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W) stroke map of an uploaded image: any non-zero (or opaque) pixel is a stroke."""
    name = Path(filename or "strokes.png").name
    check_upload_size(data, name, shape)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
                array = np.asarray(image.convert("RGBA"))[..., 3] > 0
            else:
                array = np.asarray(image.convert("L")) > 0
    except (OSError, ValueError, SyntaxError) as err:
        raise InputError(name, f"unreadable image ({err})") from None
    if array.shape != tuple(shape):
        raise InputError(name, f"stroke image is {array.shape[1]}x{array.shape[0]}, "
                               f"the video is {shape[1]}x{shape[0]}")
    return array


def finite(value: float, name: str) -> float:
    """A finite float or a one-line InputError."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(None, f"{name} must be a finite number, not {value!r}")
    return float(value)
