"""Synthetic 3-frame training clips from one static image and its mask (STM's pre-training).

Each frame is an independent random affine warp (rotation, scale, shear, translation) of
the image, with a horizontal flip and colour jitter, cropped to ``crop`` x ``crop``; up to
``max_objects`` instances of an instance mask are kept. Hide-and-Seek (KMN) then hides grid
cells of frames 2.. with probability ``hide_p``: hidden cells are filled (with the mean colour,
or with the content of another image, which leaves no flat-patch shortcut to learn) and removed
from the masks, which teaches the network occlusion and clean boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from memvos.data.masks import object_ids


@dataclass
class ClipAugment:
    """Ranges of the random warps, in degrees / relative units / pixels."""

    crop: int = 384
    frames: int = 3
    max_objects: int = 3
    rotation: float = 20.0
    scale: tuple[float, float] = (0.9, 1.1)
    shear: float = 10.0
    translate: float = 0.1  # fraction of the crop size
    jitter: float = 0.1  # brightness / contrast / saturation amplitude
    hide_grid: int = 24  # Hide-and-Seek grid: 24 x 24 cells (= the key map of a 384 crop at stride 16)
    min_object_pixels: int = 100


@dataclass
class TrainingClip:
    frames: np.ndarray  # (T, crop, crop, 3) uint8
    labels: np.ndarray  # (T, crop, crop) uint8, objects renumbered 1..K
    hidden: np.ndarray  # (T, grid, grid) bool, the Hide-and-Seek cells of each frame


def pick_objects(labels: np.ndarray, rng: np.random.Generator, aug: ClipAugment) -> np.ndarray:
    """Keep up to ``max_objects`` random instances (large enough), renumbered 1..K."""
    ids = [i for i in object_ids(labels) if np.count_nonzero(labels == i) >= aug.min_object_pixels]
    chosen = rng.permutation(ids)[: aug.max_objects] if ids else []
    out = np.zeros_like(labels)
    for new, old in enumerate(chosen, start=1):
        out[labels == old] = new
    return out


def random_affine(rng: np.random.Generator, size: tuple[int, int], aug: ClipAugment) -> np.ndarray:
    """2x3 matrix: rotate, scale and shear about the image centre, then translate, crop-centred."""
    h, w = size
    angle = math.radians(rng.uniform(-aug.rotation, aug.rotation))
    scale = rng.uniform(*aug.scale) * aug.crop / min(h, w)
    shear = math.radians(rng.uniform(-aug.shear, aug.shear))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = scale * rot @ np.array([[1.0, math.tan(shear)], [0.0, 1.0]])
    shift = rng.uniform(-aug.translate, aug.translate, size=2) * aug.crop
    centre_out = np.array([aug.crop / 2, aug.crop / 2]) + shift
    offset = centre_out - linear @ np.array([w / 2, h / 2])
    return np.hstack([linear, offset[:, None]])


def colour_jitter(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Random brightness, contrast and saturation change of an RGB uint8 image."""
    x = image.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * (1 + rng.uniform(-amount, amount))  # saturation
    x = x.mean() + (x - x.mean()) * (1 + rng.uniform(-amount, amount))  # contrast
    x = x * (1 + rng.uniform(-amount, amount))  # brightness
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def hide_and_seek(frame: np.ndarray, labels: np.ndarray, p: float, grid: int, rng: np.random.Generator,
                  fill: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hide each of grid x grid cells with probability p: in the frame, the ``fill`` colour (3,) or the
    pixels of a ``fill`` image (H, W, 3); in the mask, background."""
    h, w = labels.shape
    hidden = rng.random((grid, grid)) < p
    if not hidden.any():
        return frame, labels, hidden
    cell_mask = cv2.resize(hidden.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    frame = frame.copy()
    frame[cell_mask] = fill[cell_mask] if fill.ndim == 3 else fill
    labels = np.where(cell_mask, 0, labels).astype(labels.dtype)
    return frame, labels, hidden


def make_training_clip(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                       aug: ClipAugment | None = None, hide_p: float = 0.0,
                       fill: np.ndarray | None = None) -> TrainingClip:
    """A ``aug.frames``-frame clip from one image (H, W, 3) and its label map (H, W).

    The first frame is never hidden (it is the reference the network memorises). ``fill``:
    what hidden cells show, a colour (3,) or a (crop, crop, 3) image (default: the mean colour).
    """
    aug = aug or ClipAugment()
    labels = pick_objects(labels, rng, aug)
    fill = np.asarray(fill if fill is not None else image.reshape(-1, 3).mean(0), dtype=np.uint8)
    flip = rng.random() < 0.5
    frames, masks, hidden = [], [], []
    for t in range(aug.frames):
        for _attempt in range(10):  # the reference frame must show its objects: draw again if not
            m = random_affine(rng, labels.shape, aug)
            mask = cv2.warpAffine(labels, m, (aug.crop, aug.crop), flags=cv2.INTER_NEAREST, borderValue=0)
            if t > 0 or all(np.count_nonzero(mask == i) >= aug.min_object_pixels for i in object_ids(labels)):
                break
        frame = cv2.warpAffine(image, m, (aug.crop, aug.crop), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        if flip:
            frame, mask = frame[:, ::-1], mask[:, ::-1]
        frame = colour_jitter(np.ascontiguousarray(frame), rng, aug.jitter)
        mask = np.ascontiguousarray(mask)
        cells = np.zeros((aug.hide_grid, aug.hide_grid), bool)
        if t > 0 and hide_p > 0:
            frame, mask, cells = hide_and_seek(frame, mask, hide_p, aug.hide_grid, rng, fill)
        frames.append(frame)
        masks.append(mask)
        hidden.append(cells)
    return TrainingClip(np.stack(frames), np.stack(masks), np.stack(hidden))


def hide_probability(iteration: int, total: int, final: float = 0.5) -> float:
    """Hide-and-Seek schedule: rises linearly from 0 to ``final`` over the stage."""
    return final * min(max(iteration / max(total, 1), 0.0), 1.0)
