"""Training samples: 3-frame clips from static images (stage 0) or from videos (stage 2).

Every sample is a pure function of (seed, global sample number): the dataset item comes
from a per-epoch permutation and the augmentation from a generator seeded with the sample
number. The "sampler position" is therefore just the iteration count, which makes
``--resume`` exact and gives each distributed rank its own disjoint share of every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from memvos.data.datasets import open_dataset
from memvos.data.frames import list_images, read_rgb
from memvos.data.masks import object_ids, read_mask
from memvos.data.scribbles import grabcut_prior, simulate_interaction
from memvos.data.static_clips import ClipAugment, TrainingClip, hide_probability, make_training_clip, pick_objects
from memvos.errors import InputError


@dataclass
class Sample:
    frames: torch.Tensor  # (T, 3, S, S) float in [0, 1]
    labels: torch.Tensor  # (T, S, S) long, objects 1..K, 0 background
    num_objects: int
    prior: torch.Tensor | None = None  # interactive: (K, S, S) frame 0's mask before the user's strokes
    strokes: torch.Tensor | None = None  # interactive: (K, 2, S, S) positive, negative strokes on frame 0


def sample_rng(seed: int, number: int) -> np.random.Generator:
    return np.random.default_rng([seed, number])


def interaction_rng(seed: int, number: int) -> np.random.Generator:
    """The simulated user of sample ``number``: its own stream, so that switching interaction on
    leaves the clips themselves unchanged."""
    return np.random.default_rng([seed, number, 7])


def with_interaction(sample: Sample, rng: np.random.Generator, prior: str = "grabcut") -> Sample:
    """Add a simulated round of user input on frame 0: the mask before the round and the
    user's strokes. ``prior: grabcut`` turns them into GrabCut's guess first, exactly as the
    interactive engine does before its network sees them ('paint': the strokes alone)."""
    labels = sample.labels[0].numpy()
    masks = np.stack([labels == k for k in range(1, sample.num_objects + 1)]) if sample.num_objects else \
        np.zeros((0, *labels.shape), bool)
    before, positive, negative = simulate_interaction(masks, rng)
    if prior == "grabcut" and sample.num_objects:
        image = cv2.cvtColor((sample.frames[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                             cv2.COLOR_RGB2BGR)
        before = np.stack([grabcut_prior(image, m, p, n) if p.any() else m for m, p, n in zip(before, positive, negative)])
    strokes = np.stack([positive, negative], axis=1).astype(np.float32)
    return Sample(sample.frames, sample.labels, sample.num_objects, torch.from_numpy(before.astype(np.float32)),
                  torch.from_numpy(strokes))


def plain_round(sample: Sample) -> Sample:
    """Frame 0 given as a whole mask with no strokes: the semi-supervised case, seen through the
    interactive pass, so that an interactive model keeps propagating a given mask well."""
    k = sample.num_objects
    labels = sample.labels[0]
    prior = torch.stack([(labels == i).float() for i in range(1, k + 1)]) if k else torch.zeros(0, *labels.shape)
    return Sample(sample.frames, sample.labels, k, prior, torch.zeros(k, 2, *labels.shape))


def is_plain(seed: int, number: int, fraction: float) -> bool:
    """Whether sample ``number`` gets a plain mask instead of a simulated round (its own stream)."""
    return fraction > 0 and bool(np.random.default_rng([seed, number, 11]).random() < fraction)


def item_for(seed: int, number: int, size: int) -> int:
    """Dataset item of global sample ``number``: epoch ``number // size`` walks a fresh permutation."""
    epoch, offset = divmod(number, size)
    return int(np.random.default_rng([seed, 1_000_003, epoch]).permutation(size)[offset])


def to_sample(clip: TrainingClip) -> Sample:
    """Objects the reference (first) frame does not show cannot be tracked: they become
    background in every frame; the others are renumbered 1..K."""
    ids = object_ids(clip.labels[0])
    labels = np.zeros(clip.labels.shape, np.int64)
    for new, old in enumerate(ids, start=1):
        labels[clip.labels == old] = new
    frames = torch.from_numpy(np.ascontiguousarray(clip.frames)).permute(0, 3, 1, 2).float() / 255
    return Sample(frames, torch.from_numpy(labels), len(ids))


def image_mask_pairs(roots: list[str | Path]) -> list[tuple[Path, Path]]:
    """(image, mask) files of folders holding ``images/`` and ``masks/`` (``NAME.png`` masks with
    the images' stems); a one-line error when a folder is not laid out so or nothing pairs up."""
    pairs: list[tuple[Path, Path]] = []
    for root in map(Path, roots):
        images, masks = root / "images", root / "masks"
        if not images.is_dir() or not masks.is_dir():
            raise InputError(root, "a static-image root needs images/ and masks/ folders")
        by_stem = {p.stem: p for p in masks.glob("*.png")}
        pairs += [(img, by_stem[img.stem]) for img in list_images(images) if img.stem in by_stem]
    if not pairs:
        raise InputError(Path(roots[0]) if roots else None, "no image/mask pairs found")
    return pairs


class StaticClips:
    """Synthetic clips from image/mask pairs (``image_mask_pairs``)."""

    def __init__(self, roots: list[str | Path], aug: ClipAugment, hide_and_seek: bool = True,
                 hide_max: float = 0.5, hide_fill: str = "image") -> None:
        self.pairs = image_mask_pairs(roots)
        if hide_fill not in ("image", "mean"):
            raise ValueError(f"hide_fill must be 'image' or 'mean', got {hide_fill!r}")
        self.aug, self.hide_and_seek, self.hide_max, self.hide_fill = aug, hide_and_seek, hide_max, hide_fill

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, seed: int, number: int, iteration: int, total: int) -> Sample:
        """The Hide-and-Seek probability rises from 0 to ``hide_max`` over the ``total`` iterations."""
        rng = sample_rng(seed, number)
        item = item_for(seed, number, len(self))
        for _ in range(5):  # images without a usable object: take the next one
            image_path, mask_path = self.pairs[item]
            image, labels = read_rgb(image_path), read_mask(mask_path)
            if labels.shape != image.shape[:2]:
                labels = cv2.resize(labels, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
            if pick_objects(labels, rng, self.aug).any():
                break
            item = (item + 1) % len(self)
        hide_p = hide_probability(iteration, total, self.hide_max) if self.hide_and_seek else 0.0
        fill = self._fill_image(rng) if hide_p > 0 and self.hide_fill == "image" else None
        return to_sample(make_training_clip(image, labels, rng, self.aug, hide_p=hide_p, fill=fill))

    def _fill_image(self, rng: np.random.Generator) -> np.ndarray:
        """Content for hidden cells: another image, resized to cover the crop and cropped at random."""
        other = read_rgb(self.pairs[int(rng.integers(len(self)))][0])
        size = self.aug.crop
        factor = size / min(other.shape[:2])
        h, w = max(size, round(other.shape[0] * factor)), max(size, round(other.shape[1] * factor))
        other = cv2.resize(other, (w, h), interpolation=cv2.INTER_AREA)
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        return other[y : y + size, x : x + size]


def skip_curriculum(progress: float, points: list[int]) -> int:
    """Maximum frame skip, linear between ``points`` spread evenly over training (e.g. 5 -> 25 -> 5)."""
    if len(points) == 1:
        return int(points[0])
    x = min(max(progress, 0.0), 1.0) * (len(points) - 1)
    i = min(int(x), len(points) - 2)
    return max(1, round(points[i] + (points[i + 1] - points[i]) * (x - i)))


class VideoClips:
    """3 frames in temporal order from DAVIS / YouTube-VOS sequences, random crop, up to 3 objects."""

    def __init__(self, root: str | Path, aug: ClipAugment, split: str | None = None, exclude_last: int = 0,
                 skip: list[int] | None = None, sequences: list[str] | None = None) -> None:
        dataset = open_dataset(root, split)
        names = sequences or dataset.sequences
        if exclude_last:
            names = names[:-exclude_last]
        if not names:
            raise InputError(root, "no training sequences left")
        self.sequences = [dataset[n] for n in names]
        self.aug, self.skip = aug, skip or [5, 25, 5]

    def __len__(self) -> int:
        return len(self.sequences)

    def sample(self, seed: int, number: int, iteration: int, total: int) -> Sample:
        """The maximum frame skip follows the curriculum over the ``total`` iterations."""
        rng = sample_rng(seed, number)
        seq = self.sequences[item_for(seed, number, len(self))]
        names = [n for n in seq.frames.names if n in seq.annotations]
        skip = skip_curriculum(iteration / max(total, 1), self.skip)
        for _ in range(10):
            picks = self._pick_frames(len(names), skip, rng)
            labels = [seq.read_annotation(names[i]) for i in picks]
            ids = [i for i in object_ids(labels[0]) if np.count_nonzero(labels[0] == i) >= self.aug.min_object_pixels]
            if ids:
                break
        chosen = [int(i) for i in rng.permutation(ids)[: self.aug.max_objects]]
        labels = [renumber(lab, {new: old for new, old in enumerate(chosen, start=1)}) for lab in labels]
        frames = [seq.frames[seq.frames.names.index(names[i])] for i in picks]
        return to_sample(self._crop(frames, labels, rng))

    @staticmethod
    def _pick_frames(n: int, skip: int, rng: np.random.Generator, count: int = 3) -> list[int]:
        """``count`` increasing frame indices, each at most ``skip`` after the previous one."""
        span = min(n - 1, skip * (count - 1))
        start = int(rng.integers(0, n - span)) if n > span else 0
        picks = [start]
        for k in range(1, count):
            room = n - 1 - picks[-1] - (count - 1 - k)  # leave room for the frames still to pick
            step = int(rng.integers(1, max(1, min(skip, room)) + 1)) if room >= 1 else 0
            picks.append(min(picks[-1] + step, n - 1))
        return picks

    def _crop(self, frames: list[np.ndarray], labels: list[np.ndarray], rng: np.random.Generator) -> TrainingClip:
        """Resize (short side in [crop, 1.25 crop]), one random crop showing the objects of frame 1, flip.
        Objects the crop's first frame misses are dropped by ``to_sample``."""
        size = self.aug.crop
        h, w = labels[0].shape
        factor = rng.uniform(size, size * 1.25) / min(h, w)
        nh, nw = max(size, round(h * factor)), max(size, round(w * factor))
        frames = [cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames]
        labels = [cv2.resize(lab, (nw, nh), interpolation=cv2.INTER_NEAREST) for lab in labels]
        ids = object_ids(labels[0])
        for _ in range(10):
            y, x = int(rng.integers(0, nh - size + 1)), int(rng.integers(0, nw - size + 1))
            crop0 = labels[0][y : y + size, x : x + size]
            if all(np.count_nonzero(crop0 == i) >= self.aug.min_object_pixels for i in ids):
                break
        flip = rng.random() < 0.5
        out_f, out_l = [], []
        for f, lab in zip(frames, labels):
            f, lab = f[y : y + size, x : x + size], lab[y : y + size, x : x + size]
            if flip:
                f, lab = f[:, ::-1], lab[:, ::-1]
            out_f.append(np.ascontiguousarray(f))
            out_l.append(np.ascontiguousarray(lab))
        grid = self.aug.hide_grid
        return TrainingClip(np.stack(out_f), np.stack(out_l), np.zeros((len(out_f), grid, grid), bool))


def renumber(labels: np.ndarray, new_to_old: dict[int, int]) -> np.ndarray:
    """A label map with object ``old`` renamed ``new`` for each pair; every other id becomes background."""
    out = np.zeros(labels.shape, np.uint8)
    for new, old in new_to_old.items():
        out[labels == old] = new
    return out


def collate(samples: list[Sample], max_objects: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> frames (B, T, 3, S, S), labels (B, T, S, S), num_objects (B,)."""
    frames = torch.stack([s.frames for s in samples])
    labels = torch.stack([s.labels for s in samples])
    counts = torch.tensor([s.num_objects for s in samples])
    if int(counts.max()) > max_objects:
        raise ValueError(f"a sample has {int(counts.max())} objects, more than max_objects={max_objects}")
    return frames, labels, counts


def collate_interaction(samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> prior (B, K, S, S) and strokes (B, K, 2, S, S), K = the most objects in a sample
    (at least 1), zero-padded like the labels' missing objects."""
    k = max(max(s.num_objects for s in samples), 1)
    size = samples[0].labels.shape[-2:]
    prior = torch.zeros(len(samples), k, *size)
    strokes = torch.zeros(len(samples), k, 2, *size)
    for i, s in enumerate(samples):
        if s.prior is None or s.strokes is None:
            raise ValueError("interactive training needs samples with a simulated interaction")
        prior[i, : s.num_objects] = s.prior
        strokes[i, : s.num_objects] = s.strokes
    return prior, strokes
