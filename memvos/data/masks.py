"""Reading object masks (palette, binary L-mode, RGB colour) and fitting them to frames.

A label map is an (H, W) uint8 array: 0 background, 1..254 object ids kept as given,
255 void (not scored).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from memvos.data.palette import VOID_ID, davis_palette
from memvos.errors import InputError

log = logging.getLogger(__name__)

MAX_SIZE_MISMATCH = 0.01  # masks within 1% of the frame size are resized (nearest), with a warning
SOFT_MASK_MIN_LEVELS = 17  # an L-mode mask with more grey levels is a soft mask: threshold at 128


@dataclass
class MaskInfo:
    """A decoded mask file: its label map, the object ids in it, and how colours became ids."""

    labels: np.ndarray  # (H, W) uint8
    ids: tuple[int, ...]
    colour_to_id: dict[tuple[int, ...], int] = field(default_factory=dict)  # RGB masks only


def object_ids(labels: np.ndarray) -> tuple[int, ...]:
    """Object ids present in a label map (background 0 and void 255 excluded)."""
    counts = cv2.calcHist([np.ascontiguousarray(labels, dtype=np.uint8)], [0], None, [256], [0, 256])
    return tuple(int(i) for i in np.flatnonzero(counts.reshape(-1)) if i not in (0, VOID_ID))


def read_mask_info(path: str | Path, require_object: bool = False) -> MaskInfo:
    """Decode a mask file and list its object ids; see ``read_mask`` for the formats."""
    labels, colours = _decode_mask(Path(path))
    ids = object_ids(labels)
    if require_object and not ids:
        raise InputError(path, "mask contains no object (all pixels are background or void)")
    return MaskInfo(labels=labels, ids=ids, colour_to_id=colours)


def read_mask(path: str | Path, require_object: bool = False) -> np.ndarray:
    """Label map (H, W) uint8 of a mask file of any supported kind.

    - palette PNG ('P'): the index is the object id;
    - 'L'/'1' binary (0/255 or 0/1): one object, id 1; a grey map with few levels keeps
      the levels as ids; a soft mask (many levels) is thresholded at 128;
    - 'RGB'/'RGBA': each distinct colour becomes an id (DAVIS palette colours keep their
      palette index, other colours take the next free ids); black / transparent is background.
    """
    if require_object:
        return read_mask_info(path, require_object=True).labels
    return _decode_mask(Path(path))[0]


def _decode_mask(path: Path) -> tuple[np.ndarray, dict[tuple[int, ...], int]]:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            array = np.asarray(im)
    except FileNotFoundError:
        raise InputError(path, "mask file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(path, f"unreadable or corrupt mask image ({err})") from None

    colours: dict[tuple[int, ...], int] = {}
    if mode == "P":
        labels = array.astype(np.uint8)
    elif mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L"):
        grey = array[..., 0] if mode == "LA" else array
        labels = _grey_to_labels(path, grey)
    elif mode in ("RGB", "RGBA", "RGBX"):
        labels, colours = _colours_to_labels(path, array)
    else:
        raise InputError(path, f"unsupported mask image mode {mode!r}")
    return labels, colours


def _grey_to_labels(path: Path, grey: np.ndarray) -> np.ndarray:
    if grey.dtype == bool:
        return grey.astype(np.uint8)
    levels = np.unique(grey)
    if levels.max(initial=0) > 255:
        raise InputError(path, f"mask values go up to {int(levels.max())}; ids must be at most 254")
    if set(levels.tolist()) <= {0, 1} or set(levels.tolist()) <= {0, 255}:
        return (grey > 0).astype(np.uint8)  # binary: one object, id 1
    if len(levels) >= SOFT_MASK_MIN_LEVELS:
        log.warning("%s: soft mask with %d grey levels, thresholded at 128", path, len(levels))
        return (grey >= 128).astype(np.uint8)
    return grey.astype(np.uint8)  # a few grey levels: they are the ids


def _colours_to_labels(path: Path, rgb: np.ndarray) -> tuple[np.ndarray, dict[tuple[int, ...], int]]:
    """Map each distinct colour to an id; report the mapping."""
    alpha = rgb[..., 3] if rgb.shape[-1] == 4 else None
    rgb = np.ascontiguousarray(rgb[..., :3])
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    if alpha is not None:
        packed[alpha == 0] = 0
    uniques, inverse = np.unique(packed.reshape(-1), return_inverse=True)
    palette_index = {tuple(int(c) for c in colour): i for i, colour in enumerate(davis_palette())}
    mapping: dict[tuple[int, ...], int] = {}
    used = set()
    for value in uniques:
        colour = (int(value) >> 16 & 255, int(value) >> 8 & 255, int(value) & 255)
        if colour in palette_index:
            mapping[colour] = palette_index[colour]
            used.add(mapping[colour])
    free = (i for i in range(1, VOID_ID) if i not in used)
    for value in uniques:
        colour = (int(value) >> 16 & 255, int(value) >> 8 & 255, int(value) & 255)
        if colour not in mapping:
            new_id = next(free, None)
            if new_id is None:
                raise InputError(path, f"RGB mask has {len(uniques)} colours; at most 254 objects are supported")
            mapping[colour] = new_id
    lut = np.array([mapping[(int(v) >> 16 & 255, int(v) >> 8 & 255, int(v) & 255)] for v in uniques], np.uint8)
    labels = lut[inverse].reshape(packed.shape)
    report = {c: i for c, i in mapping.items() if i != 0}
    if report:
        log.info("%s: colour -> id %s", path, ", ".join(f"{c}->{i}" for c, i in sorted(report.items(), key=lambda x: x[1])))
    return labels, report


def fit_mask_to_frame(labels: np.ndarray, frame_size: tuple[int, int], path: str | Path) -> np.ndarray:
    """Return ``labels`` at ``frame_size`` (H, W).

    A size within 1% of the frame's (e.g. a 853x480 mask for 854x480 frames) is resized by
    nearest neighbour with a warning; a larger mismatch is an error naming the file.
    """
    h, w = frame_size
    mh, mw = labels.shape[:2]
    if (mh, mw) == (h, w):
        return labels
    if abs(mh - h) > MAX_SIZE_MISMATCH * h or abs(mw - w) > MAX_SIZE_MISMATCH * w:
        raise InputError(path, f"mask is {mw}x{mh} but the frames are {w}x{h}")
    log.warning("%s: mask is %dx%d, frames are %dx%d; resized (nearest neighbour)", path, mw, mh, w, h)
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
