"""Training the re-identification projection: learned whitening of pooled region features.

Pooled ImageNet features of two regions are similar for almost anything (cosines of ~0.9),
so raw features cannot tell an object from a look-alike. Learned discriminative whitening
(Radenovic et al., 2016) fixes that in closed form from labelled regions: whiten with the
covariance of differences between matching regions (the same object in other frames, or
in an augmented copy of a photo), then keep the 256 directions along which non-matching
regions (other objects, background regions) differ most.

    memvos train --config configs/train/reid-lite0.yaml

Positives: the object of a DAVIS training sequence on several frames; a COCO instance or a
photo's person in the photo and in a flipped, rescaled, colour-jittered copy. Negatives:
every other region, including background regions of the same frames.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from memvos.data.frames import list_images, read_rgb
from memvos.data.masks import read_mask
from memvos.errors import InputError
from memvos.inference.core import processing_size
from memvos.inference.reid import EMBED_DIM, Projection, region_descriptor, reid_inputs, save_projection
from memvos.train.config import data_kind, read_yaml_text

log = logging.getLogger(__name__)


@dataclass
class ReidTrainConfig:
    model: str | None = None  # whose re-id features: a checkpoint (None: the shipped default)
    out: str = "runs/reid"
    davis: str | None = None  # DAVIS-layout root: positives across frames
    split: str | None = "train"
    exclude_last: int = 6  # the held-out sequences are never used
    sequences: list[str] = field(default_factory=list)  # explicit sequences instead (for evaluation)
    frames_per_sequence: int = 12
    static: list[str] = field(default_factory=list)  # image folders (images/, masks/): positives by augmentation
    max_images: int = 300  # per static folder
    short_side: int = 360
    background_regions: int = 2  # negatives per frame
    min_cells: int = 6  # regions smaller than this (feature cells) are skipped
    seed: int = 0
    dim: int = EMBED_DIM


def load_reid_config(path: str | Path, data_root: str | Path | None = None) -> ReidTrainConfig:
    """The YAML (``data.kind: reid``) -> config; one-line error naming the file on bad input.
    ``$DATA_ROOT`` in it is replaced by ``data_root`` (see ``memvos.train.config.read_yaml_text``)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(read_yaml_text(path, data_root)) or {}
        data = dict(raw.get("data") or {})
        if data.pop("kind", None) != "reid":
            raise ValueError("not a re-id training config (data.kind: reid)")
        values = {"model": raw.get("model"), "out": raw.get("out", f"runs/{path.stem}"), **data}
        names = {f.name for f in dataclasses.fields(ReidTrainConfig)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} (known: {sorted(names)})")
        return ReidTrainConfig(**values)
    except (OSError, yaml.YAMLError, TypeError, ValueError) as err:
        raise InputError(path, " ".join(str(err).split())) from None


def is_reid_config(path: str | Path) -> bool:
    return data_kind(path) == "reid"


# ---- region descriptors ----------------------------------------------------------------------
class Describer:
    """Frame + region masks -> region descriptors with a model's re-id features."""

    def __init__(self, model, short_side: int) -> None:
        self.model, self.short_side = model, short_side

    @torch.inference_mode()
    def features(self, rgb: np.ndarray) -> torch.Tensor:
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.array(rgb))  # a copy: the frame may be read-only
        x = x.permute(2, 0, 1)[None].float() / 255
        size = processing_size(h, w, self.short_side)
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return reid_inputs(self.model, self.model.encode_query(x), x)

    @staticmethod
    def grid(masks: np.ndarray, size) -> torch.Tensor:
        """(N, H, W) bool -> (N, h, w) cell coverage."""
        m = torch.from_numpy(masks.astype(np.float32))[None]
        return F.adaptive_avg_pool2d(m, tuple(size))[0]

    def describe(self, features: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        return region_descriptor(features, cells)


def background_regions(gt: np.ndarray, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Random boxes of the object's size elsewhere in the frame, minus the object."""
    h, w = gt.shape
    ys, xs = np.nonzero(gt)
    bh = max(int(ys.max() - ys.min() + 1), h // 6) if len(ys) else h // 4
    bw = max(int(xs.max() - xs.min() + 1), w // 6) if len(xs) else w // 4
    bh, bw = min(bh, h), min(bw, w)
    out = []
    for _ in range(count):
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        box = np.zeros_like(gt, dtype=bool)
        box[y : y + bh, x : x + bw] = True
        out.append(box & ~gt)
    return out


def augment(rgb: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A flipped, rescaled (0.7-1.3), brightness/contrast-jittered copy of a photo and its masks."""
    import cv2

    scale = float(rng.uniform(0.7, 1.3))
    h, w = rgb.shape[:2]
    size = (max(int(w * scale), 16), max(int(h * scale), 16))
    out = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)[:, ::-1]
    gain, bias = rng.uniform(0.75, 1.25, size=3), rng.uniform(-20, 20, size=3)
    out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    m = np.stack([cv2.resize(x.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)[:, ::-1] > 0 for x in masks])
    return out, m


def collect(cfg: ReidTrainConfig, model) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (N, D) and group labels (N,): equal labels = the same object; negatives get
    a label of their own."""
    rng = np.random.default_rng(cfg.seed)
    describer = Describer(model, cfg.short_side)
    descriptors, groups = [], []
    next_group = 0

    def add(d: torch.Tensor, group: int) -> None:
        descriptors.append(d.numpy().astype(np.float64))
        groups.append(group)

    def fresh() -> int:
        nonlocal next_group
        next_group += 1
        return next_group - 1

    if cfg.davis:
        from memvos.data.datasets import DavisDataset

        dataset = DavisDataset(cfg.davis, split=cfg.split)
        names = dataset.sequences[: len(dataset.sequences) - cfg.exclude_last] if cfg.exclude_last else dataset.sequences
        names = cfg.sequences or names
        for name in tqdm(names, desc="re-id: DAVIS sequences", unit="seq"):
            seq = dataset[name]
            picks = np.linspace(0, len(seq.frames) - 1, min(cfg.frames_per_sequence, len(seq.frames))).round().astype(int)
            groups_here: dict[int, int] = {}
            for t in sorted(set(picks.tolist())):
                frame_name = seq.frames.names[t]
                if frame_name not in seq.annotations:
                    continue
                labels = read_mask(seq.annotations[frame_name])
                features = describer.features(seq.frames[t])
                for obj in [int(i) for i in np.unique(labels) if 0 < i < 255]:
                    gt = labels == obj
                    cells = describer.grid(gt[None], features.shape[-2:])
                    if float(cells.sum()) < cfg.min_cells:
                        continue
                    group = groups_here.setdefault(obj, fresh())
                    add(describer.describe(features, cells)[0], group)
                    regions = background_regions(gt, rng, cfg.background_regions)
                    bg = describer.grid(np.stack(regions), features.shape[-2:])
                    for d, c in zip(describer.describe(features, bg), bg):
                        if float(c.sum()) >= cfg.min_cells:
                            add(d, fresh())
    for folder in cfg.static:
        folder = Path(folder)
        images = list_images(folder / "images")[: cfg.max_images]
        for path in tqdm(images, desc=f"re-id: {folder.name}", unit="image"):
            mask_path = folder / "masks" / f"{path.stem}.png"
            if not mask_path.is_file():
                continue
            rgb, labels = read_rgb(path), read_mask(mask_path)
            ids = [int(i) for i in np.unique(labels) if 0 < i < 255]
            if not ids or labels.shape != rgb.shape[:2]:
                continue
            masks = np.stack([labels == i for i in ids])
            copy_rgb, copy_masks = augment(rgb, masks, rng)
            views = [(rgb, masks), (copy_rgb, copy_masks)]
            object_groups = [fresh() for _ in ids]
            for view_rgb, view_masks in views:
                features = describer.features(view_rgb)
                cells = describer.grid(view_masks, features.shape[-2:])
                for d, c, g in zip(describer.describe(features, cells), cells, object_groups):
                    if float(c.sum()) >= cfg.min_cells:
                        add(d, g)
    if not descriptors:
        raise InputError(None, "re-id training found no regions (check data.davis and data.static)")
    return np.stack(descriptors), np.array(groups)


# ---- learned whitening -----------------------------------------------------------------------
def matching_pairs(groups: np.ndarray, max_per_group: int = 200, seed: int = 0) -> np.ndarray:
    """(P, 2) index pairs of regions with the same group label."""
    rng = np.random.default_rng(seed)
    pairs = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if len(members) < 2:
            continue
        i, j = np.triu_indices(len(members), k=1)
        chosen = rng.permutation(len(i))[:max_per_group]
        pairs.append(np.stack([members[i[chosen]], members[j[chosen]]], 1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), int)


def non_matching_pairs(groups: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    a, b = rng.integers(0, len(groups), count), rng.integers(0, len(groups), count)
    keep = groups[a] != groups[b]
    return np.stack([a[keep], b[keep]], 1)


def fit_whitening(x: np.ndarray, groups: np.ndarray, dim: int = EMBED_DIM, ridge: float = 1e-3,
                  seed: int = 0) -> Projection:
    """Learned discriminative whitening: P = U^T C_S^{-1/2}, C_S the covariance of matching
    differences, U the top ``dim`` eigenvectors of the non-matching differences' covariance
    after that whitening. Returns the projection (mean, P (dim, D))."""
    pos = matching_pairs(groups, seed=seed)
    if len(pos) < 2:
        raise ValueError("learned whitening needs matching pairs (the same object in two views)")
    mean = x[np.unique(pos)].mean(0)
    diff = x[pos[:, 0]] - x[pos[:, 1]]
    c_s = diff.T @ diff / len(diff)
    c_s += ridge * np.trace(c_s) / len(c_s) * np.eye(len(c_s))
    values, vectors = np.linalg.eigh(c_s)
    whiten = vectors @ np.diag(values ** -0.5) @ vectors.T  # C_S^{-1/2}
    neg = non_matching_pairs(groups, max(20 * len(pos), 20000), seed)
    d = (x[neg[:, 0]] - x[neg[:, 1]]) @ whiten.T
    c_d = d.T @ d / len(d)
    values, vectors = np.linalg.eigh(c_d)
    top = vectors[:, np.argsort(values)[::-1][: min(dim, len(values))]]
    matrix = top.T @ whiten
    return Projection(torch.from_numpy(mean).float(), torch.from_numpy(matrix).float())


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a positive pair scores above a negative one (ties count half)."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pair_scores(embeddings: np.ndarray, groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of matching and of non-matching pairs."""
    pos = matching_pairs(groups, seed=seed)
    neg = non_matching_pairs(groups, 20000, seed)
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    return (e[pos[:, 0]] * e[pos[:, 1]]).sum(1), (e[neg[:, 0]] * e[neg[:, 1]]).sum(1)


def train_reid(cfg: ReidTrainConfig) -> tuple[Path, dict[str, Any]]:
    """Collect regions, fit the whitening, write OUT/reid-<features>.safetensors; returns the path
    and the training-set AUC of raw and whitened embeddings."""
    from memvos.model.factory import load_model

    model, _ = load_model(cfg.model)
    x, groups = collect(cfg, model)
    projection = fit_whitening(x, groups, cfg.dim, seed=cfg.seed)
    raw = roc_auc(*pair_scores(x, groups))
    whitened = roc_auc(*pair_scores(projection(torch.from_numpy(x).float()).numpy(), groups))
    path = Path(cfg.out) / f"reid-{model.reid_feature_name}.safetensors"
    save_projection(projection, path)
    stats = {"regions": len(x), "objects": len(np.unique(groups)), "auc_raw": raw, "auc_whitened": whitened,
             **cross_fitted_thresholds(x, groups, cfg)}
    return path, stats


def cross_fitted_thresholds(x: np.ndarray, groups: np.ndarray, cfg: ReidTrainConfig) -> dict[str, float]:
    """Similarity thresholds read off regions the whitening was not fitted on (half the objects
    fit, the other half score): the cosine that 1% and 10% of non-matching pairs exceed, and
    the share of matching pairs above each (how ReidConfig's accept and keep were chosen)."""
    rng = np.random.default_rng(cfg.seed + 7)
    labels = np.unique(groups)
    half = set(rng.permutation(labels)[: len(labels) // 2].tolist())
    fit = np.array([g in half for g in groups])
    projection = fit_whitening(x[fit], groups[fit], cfg.dim, seed=cfg.seed)
    pos, neg = pair_scores(projection(torch.from_numpy(x[~fit]).float()).numpy(), groups[~fit])
    far1, far10 = float(np.quantile(neg, 0.99)), float(np.quantile(neg, 0.90))
    return {"auc_held": roc_auc(pos, neg), "sim_far1": far1, "tpr_far1": float((pos > far1).mean()),
            "sim_far10": far10, "tpr_far10": float((pos > far10).mean()), "sim_same_median": float(np.median(pos))}
