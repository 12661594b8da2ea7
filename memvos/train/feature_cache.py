"""Training from cached backbone features: the frozen backbone runs once per image, not per step.

The keys' backbone is frozen, so its features (f4, f8, f16) of a training image never change.
``FeatureCache`` computes them once per image at a fixed size (short side ``short_side``, both
sides multiples of 16) and keeps them on disk as fp16; clips are then made in feature space:
``warp_view`` resamples every level (and the label map) through one affine map, which gives the
crop, flip and scale of the video stage exactly when the map is an aligned crop, and the random
affine "motion" of the static stage (STM's synthetic clips) as a resampling of the features.
A training step then costs the value encoder, the read and the decoder: about half the time of
the pixel pipeline at crop 384 (the backbone's share), with colour jitter the one augmentation
feature space cannot do. Hide-and-Seek hides 16-pixel cells of the crop by pasting another
image's features (and background labels) into them.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memvos.data.atomic import atomic_path
from memvos.data.datasets import open_dataset
from memvos.data.frames import read_rgb
from memvos.data.masks import object_ids, read_mask
from memvos.data.palette import VOID_ID
from memvos.data.static_clips import ClipAugment, hide_probability, pick_objects, random_affine
from memvos.errors import InputError
from memvos.train.data import VideoClips, image_mask_pairs, item_for, renumber, sample_rng, skip_curriculum

GRID = 16  # the coarsest feature stride: cached sizes and aligned crops are multiples of it


@dataclass
class CachedImage:
    features: tuple[Tensor, Tensor, Tensor]  # f4 (C4, H/4, W/4), f8 (C8, H/8, W/8), f16 (Ck, H/16, W/16), fp16
    labels: np.ndarray  # (H, W) uint8 label map at the cached size


@dataclass
class FeatureSample:
    features: tuple[Tensor, Tensor, Tensor]  # each (T, C, crop/s, crop/s) float32
    labels: Tensor  # (T, crop, crop) long, objects 1..K
    num_objects: int


def cached_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) scaled so the short side is ``short_side``, each side rounded to a multiple of 16."""
    factor = short_side / min(height, width)
    return (max(GRID, round(height * factor / GRID) * GRID), max(GRID, round(width * factor / GRID) * GRID))


class FeatureCache:
    """Backbone features of images, computed on first use and kept under ``root`` (fp16 ``.pt`` files
    named after the image's path, the backbone and the size)."""

    def __init__(self, backbone: nn.Module, name: str, root: str | Path, short_side: int = 384) -> None:
        self.backbone, self.short_side = backbone, short_side
        self.folder = Path(root) / f"{name}-{short_side}"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, image: Path) -> Path:
        digest = hashlib.sha1(str(Path(image).resolve()).encode()).hexdigest()[:20]
        return self.folder / f"{digest}.pt"

    def get(self, image: Path, mask: Path) -> CachedImage:
        path = self.path_for(image)
        if path.is_file():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                return CachedImage(tuple(state["features"]), state["labels"].numpy())
            except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError):  # damaged: compute again
                pass
        return self._compute(image, mask, path)

    @torch.no_grad()
    def _compute(self, image: Path, mask: Path, path: Path) -> CachedImage:
        rgb, labels = read_rgb(image), read_mask(mask)
        h, w = cached_size(*rgb.shape[:2], self.short_side)
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if h < rgb.shape[0] else cv2.INTER_LINEAR)
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        was_training = self.backbone.training
        self.backbone.eval()
        features = tuple(f[0].half().contiguous() for f in self.backbone(x))
        self.backbone.train(was_training)
        with atomic_path(path) as tmp:
            torch.save({"features": list(features), "labels": torch.from_numpy(labels)}, tmp)
        return CachedImage(features, labels)


def warp_view(image: CachedImage, matrix: np.ndarray, crop: int, flip: bool = False
              ) -> tuple[list[Tensor], np.ndarray]:
    """Resample every feature level and the labels through ``matrix`` (2x3, cached-image pixels ->
    crop pixels), then flip. -> features [(C, crop/s, crop/s) float32 per level], labels (crop, crop).

    Feature cells are sampled at their centres, so an aligned crop (a translation by multiples of
    16 pixels) returns the cached values unchanged."""
    h, w = image.labels.shape
    inverse = cv2.invertAffineTransform(matrix.astype(np.float64))  # crop px -> image px
    out = []
    for level in image.features:
        stride = h // level.shape[-2]
        n = crop // stride
        centres = (np.arange(n) + 0.5) * stride - 0.5  # crop-pixel coordinates of the output cells
        xs, ys = np.meshgrid(centres, centres)
        sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
        sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
        grid = np.stack([(sx + 0.5) / w * 2 - 1, (sy + 0.5) / h * 2 - 1], axis=-1)  # align_corners=False
        grid_t = torch.from_numpy(grid).float()[None]
        sampled = F.grid_sample(level[None].float(), grid_t, mode="bilinear", padding_mode="reflection",
                                align_corners=False)[0]
        out.append(sampled.flip(-1) if flip else sampled)
    labels = cv2.warpAffine(image.labels, matrix, (crop, crop), flags=cv2.INTER_NEAREST, borderValue=0)
    return out, np.ascontiguousarray(labels[:, ::-1] if flip else labels)


def hide_cells(features: list[Tensor], labels: np.ndarray, fill: list[Tensor], p: float,
               rng: np.random.Generator) -> tuple[list[Tensor], np.ndarray]:
    """Hide-and-Seek in feature space: each 16-pixel cell of the crop is hidden with probability ``p``:
    every level shows ``fill``'s features there and the labels become background."""
    size = labels.shape[0]
    hidden = rng.random((size // GRID, size // GRID)) < p
    if not hidden.any():
        return features, labels
    cells = torch.from_numpy(hidden)
    out = []
    for level, other in zip(features, fill):
        n = level.shape[-1]
        where = cells.repeat_interleave(n // cells.shape[0], 0).repeat_interleave(n // cells.shape[1], 1) \
            if n >= cells.shape[0] else F.adaptive_max_pool2d(cells[None].float(), n)[0].bool()
        out.append(torch.where(where, other, level))
    pixel = cv2.resize(hidden.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    return out, np.where(pixel, 0, labels).astype(labels.dtype)


PASTED_IDS = 128  # a pasted object's id: this plus its id in the donor image (below the void id 255)


def paste_objects(features: list[Tensor], labels: np.ndarray, donor_features: list[Tensor],
                  donor_labels: np.ndarray) -> tuple[list[Tensor], np.ndarray]:
    """Copy-paste in feature space: the donor view's objects cover the view (features of every
    level where they cover at least half a cell, labels where they cover a pixel) and become
    objects of their own (ids ``PASTED_IDS`` + donor id), occluding what is under them. Clips
    then hold objects from different photographs that move independently and pass over each
    other, more like the crowds and look-alikes of real video than one warped photograph is."""
    donor_ids = [i for i in object_ids(donor_labels) if PASTED_IDS + i < VOID_ID]
    cover = np.isin(donor_labels, donor_ids)
    if not cover.any():
        return features, labels
    out = []
    for level, other in zip(features, donor_features):
        n = level.shape[-1]
        share = cv2.resize(cover.astype(np.float32), (n, level.shape[-2]), interpolation=cv2.INTER_AREA)
        out.append(torch.where(torch.from_numpy(share >= 0.5), other, level))
    pasted = np.where(cover, PASTED_IDS + donor_labels.astype(np.int64), labels).astype(labels.dtype)
    return out, pasted


def _renumber_first(labels: list[np.ndarray], max_objects: int, min_pixels: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, int]:
    """Objects of frame 0 (at least ``min_pixels``), up to ``max_objects`` at random, renumbered 1..K
    in every frame; others become background. -> (T, S, S) int64, K."""
    ids = [i for i in object_ids(labels[0]) if np.count_nonzero(labels[0] == i) >= min_pixels]
    chosen = [int(i) for i in rng.permutation(ids)[:max_objects]] if ids else []
    new_to_old = dict(enumerate(chosen, start=1))
    return np.stack([renumber(lab, new_to_old) for lab in labels]).astype(np.int64), len(chosen)


def _sample(features: list[list[Tensor]], labels: list[np.ndarray], aug: ClipAugment,
            rng: np.random.Generator) -> FeatureSample:
    renumbered, k = _renumber_first(labels, aug.max_objects, aug.min_object_pixels, rng)
    stacked = tuple(torch.stack([f[level] for f in features]) for level in range(3))
    return FeatureSample(stacked, torch.from_numpy(renumbered), k)


class CachedStaticClips:
    """STM's synthetic 3-frame clips from static images, made from cached features: each frame is
    an independent random affine view (``random_affine``) of the image's features and labels,
    one flip per clip; Hide-and-Seek optional (probability rising to ``hide_max``); with ``paste``,
    that share of the clips also gets a second image's objects (``paste_objects``)."""

    def __init__(self, roots: list[str | Path], aug: ClipAugment, cache: FeatureCache,
                 hide_and_seek: bool = False, hide_max: float = 0.5, paste: float = 0.0) -> None:
        self.pairs = image_mask_pairs(roots)
        self.aug, self.cache, self.hide_and_seek, self.hide_max = aug, cache, hide_and_seek, hide_max
        self.paste = paste  # share of clips that get another image's objects pasted in (``paste_objects``)

    def __len__(self) -> int:
        return len(self.pairs)

    def items(self) -> list[tuple[Path, Path]]:
        return list(self.pairs)

    def sample(self, seed: int, number: int, iteration: int, total: int) -> FeatureSample:
        rng = sample_rng(seed, number)
        item = item_for(seed, number, len(self))
        for _ in range(5):  # images without a usable object: take the next one
            image = self.cache.get(*self.pairs[item])
            if pick_objects(image.labels, rng, self.aug).any():
                break
            item = (item + 1) % len(self)
        hide_p = hide_probability(iteration, total, self.hide_max) if self.hide_and_seek else 0.0
        fill = None
        if hide_p > 0:
            other = self.cache.get(*self.pairs[int(rng.integers(len(self)))])
            fill = warp_view(other, random_affine(rng, other.labels.shape, self.aug), self.aug.crop)[0]
        flip = bool(rng.random() < 0.5)
        donor = None
        if self.paste > 0 and rng.random() < self.paste:
            donor = self.cache.get(*self.pairs[int(rng.integers(len(self)))])
        features, labels = [], []
        for t in range(self.aug.frames):
            for _attempt in range(10):  # the reference frame must show an object: draw again if not
                view, lab = warp_view(image, random_affine(rng, image.labels.shape, self.aug), self.aug.crop, flip)
                if t > 0 or any(np.count_nonzero(lab == i) >= self.aug.min_object_pixels for i in object_ids(lab)):
                    break
            if donor is not None:  # the donor's objects move on their own (a view of their own per frame)
                view, lab = paste_objects(view, lab, *warp_view(donor, random_affine(rng, donor.labels.shape, self.aug),
                                                                self.aug.crop, flip))
            if t > 0 and fill is not None:
                view, lab = hide_cells(view, lab, fill, hide_p, rng)
            features.append(view)
            labels.append(lab)
        return _sample(features, labels, self.aug, rng)


class CachedVideoClips:
    """3 frames in temporal order (the skip curriculum of ``VideoClips``) from DAVIS-layout
    datasets, made from cached features: one crop (aligned to 16 pixels; scaled by up to 1.25
    with ``scale``) and one flip per clip, up to ``max_objects`` objects of frame 0."""

    def __init__(self, roots: list[str | Path], aug: ClipAugment, cache: FeatureCache,
                 exclude: dict[str, list[str]] | None = None, skip: list[int] | None = None,
                 scale: bool = True) -> None:
        self.sequences = []  # (list of (frame, mask) paths) per sequence
        exclude = exclude or {}
        for root in map(Path, roots):
            dataset = open_dataset(root)
            for name in dataset.sequences:
                if name in exclude.get(root.name, []):
                    continue
                seq = dataset[name]
                pairs = [(file, seq.annotations[n]) for n, file in zip(seq.frames.names, seq.frames.files)
                         if n in seq.annotations]
                if len(pairs) >= 2:
                    self.sequences.append(pairs)
        if not self.sequences:
            raise InputError(Path(roots[0]) if roots else None, "no training sequences left")
        self.aug, self.cache, self.skip, self.scale = aug, cache, skip or [5, 25, 5], scale

    def __len__(self) -> int:
        return len(self.sequences)

    def items(self) -> list[tuple[Path, Path]]:
        return [pair for seq in self.sequences for pair in seq]

    def sample(self, seed: int, number: int, iteration: int, total: int) -> FeatureSample:
        rng = sample_rng(seed, number)
        pairs = self.sequences[item_for(seed, number, len(self))]
        skip = skip_curriculum(iteration / max(total, 1), self.skip)
        images = [self.cache.get(*pairs[i]) for i in VideoClips._pick_frames(len(pairs), skip, rng)]
        matrix = self._crop_matrix(images[0].labels, rng)
        flip = bool(rng.random() < 0.5)
        views = [warp_view(image, matrix, self.aug.crop, flip) for image in images]
        return _sample([v[0] for v in views], [v[1] for v in views], self.aug, rng)

    def _crop_matrix(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Scale (1 or up to 1.25) and a crop position whose first frame shows frame 0's objects
        (10 tries); without scaling the crop is aligned to the 16-pixel grid."""
        size = self.aug.crop
        h, w = labels.shape
        factor = float(rng.uniform(1.0, 1.25)) if self.scale else 1.0
        factor = max(factor, size / min(h, w))
        ids = object_ids(labels)
        sh, sw = h * factor, w * factor
        for _ in range(10):
            y, x = float(rng.uniform(0, max(sh - size, 0))), float(rng.uniform(0, max(sw - size, 0)))
            if factor == 1.0:
                y, x = math.floor(y / GRID) * GRID, math.floor(x / GRID) * GRID
            m = np.array([[factor, 0, -x], [0, factor, -y]])
            view = cv2.warpAffine(labels, m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
            if all(np.count_nonzero(view == i) >= self.aug.min_object_pixels for i in ids):
                break
        return m


class MixedClips:
    """Video clips, with a share ``static_fraction`` of STM's synthetic static clips mixed in: the
    static images keep the decoder general while it learns from the few real videos."""

    def __init__(self, video: CachedVideoClips, static: CachedStaticClips, static_fraction: float) -> None:
        if not 0.0 <= static_fraction <= 1.0:
            raise ValueError(f"static_fraction must be in [0, 1], got {static_fraction!r}")
        self.video, self.static, self.fraction = video, static, static_fraction
        self.cache = video.cache

    def __len__(self) -> int:
        return len(self.video)

    @property
    def sequences(self) -> list:
        return self.video.sequences

    def items(self) -> list[tuple[Path, Path]]:
        return self.video.items() + self.static.items()

    def sample(self, seed: int, number: int, iteration: int, total: int) -> FeatureSample:
        """Sample ``number`` is static or video by its own random stream (resumable, like the rest)."""
        if np.random.default_rng([seed, number, 13]).random() < self.fraction:
            return self.static.sample(seed, number, iteration, total)
        return self.video.sample(seed, number, iteration, total)


def collate_features(samples: list[FeatureSample], max_objects: int
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> f4 (B, T, C4, ...), f8 (B, T, C8, ...), f16 (B, T, Ck, ...), labels (B, T, S, S), num_objects (B,)."""
    counts = torch.tensor([s.num_objects for s in samples])
    if int(counts.max()) > max_objects:
        raise ValueError(f"a sample has {int(counts.max())} objects, more than max_objects={max_objects}")
    levels = [torch.stack([s.features[i] for s in samples]) for i in range(3)]
    return (*levels, torch.stack([s.labels for s in samples]), counts)
