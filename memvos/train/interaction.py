"""Training the interaction network (``memvos.model.interaction``) on static images with a
simulated user: clicks (the first near the object's centre, as a person clicks; more inside, some
outside) or scribbles (skeleton strokes and random walks, as STM's paper simulates them), and
correction rounds on the network's own prediction (a click on its largest error, as the
click-based tools train). Backbone features come from the training feature cache, so a step costs
the small network only. Every ``held_out_every``-th image (by a hash of its name) is never
trained on: the click benchmark scores those.

    memvos train --config configs/train/interaction.yaml [--resume]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from memvos.data.atomic import atomic_path, check_output
from memvos.data.masks import object_ids
from memvos.data.pipeline import prefetch
from memvos.data.scribbles import click_disks, random_walk_stroke, skeleton_strokes
from memvos.data.static_clips import ClipAugment, random_affine
from memvos.errors import InputError
from memvos.inference.interactive import is_first_touch, keep_near_marks
from memvos.model.interaction import (
    ClickToMask,
    InteractionNet,
    InteractionNetConfig,
    guidance_planes,
    interaction_config_of,
    is_interaction_weights,
    save_interaction_net,
    save_interaction_state,
)
from memvos.train.averaging import mean_state
from memvos.train.config import data_kind, read_yaml_text, snapshot_path
from memvos.train.data import image_mask_pairs, sample_rng
from memvos.train.feature_cache import CachedImage, FeatureCache, warp_view

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"


@dataclass
class InteractionTrainConfig:
    roots: list[str] = field(default_factory=list)  # static image folders (images/, masks/)
    out: str = "runs/interaction"
    init: str | None = None  # start from these interaction weights (a longer run continuing a shorter one)
    feature_cache: str = "runs/feature-cache"
    cache_short_side: int = 384
    crop: int = 320
    held_out_every: int = 10  # every N-th image (name hash) is kept for evaluation
    min_object_fraction: float = 0.01  # objects smaller than this share of the crop are not targets
    click_p: float = 0.6  # a sample is clicks (else scribbles)
    self_correct: float = 0.4  # share of batches given a correction round on the network's own output
    width: int = 96
    iterations: int = 4000
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup: int = 100
    min_lr_ratio: float = 0.05
    clip_grad: float = 1.0
    seed: int = 31
    checkpoint_every: int = 200
    log_every: int = 25
    threads: int | None = None
    snapshots: list[int] = field(default_factory=list)  # iterations whose weights are also exported, to average


def is_interaction_config(path: str | Path) -> bool:
    return data_kind(path) == "interaction"


def load_interaction_config(path: str | Path, data_root: str | Path | None = None) -> InteractionTrainConfig:
    """The YAML (``data.kind: interaction``; sections data, train) -> config; one-line errors."""
    path = Path(path)
    try:
        raw = yaml.safe_load(read_yaml_text(path, data_root)) or {}
        data, train = dict(raw.get("data") or {}), dict(raw.get("train") or {})
        if data.pop("kind", None) != "interaction":
            raise ValueError("not an interaction training config (data.kind: interaction)")
        values = {"out": raw.get("out", f"runs/{path.stem}"), "init": raw.get("init"), **data, **train}
        names = {f.name for f in dataclasses.fields(InteractionTrainConfig)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} (known: {sorted(names)})")
        cfg = InteractionTrainConfig(**values)
        if not cfg.roots:
            raise ValueError("data.roots is empty: give the static image folders")
        if any(not 1 <= n <= cfg.iterations for n in cfg.snapshots):
            raise ValueError(f"train.snapshots must be iterations from 1 to {cfg.iterations}, got {cfg.snapshots}")
        if cfg.crop % 16 or cfg.crop > cfg.cache_short_side:
            raise ValueError(f"data.crop must be a multiple of 16 and at most cache_short_side, got {cfg.crop}")
        return cfg
    except (OSError, yaml.YAMLError, TypeError, ValueError) as err:
        raise InputError(path, " ".join(str(err).split())) from None


def is_held_out(image: Path, every: int) -> bool:
    """Whether an image is kept out of training (stable: a hash of its file name)."""
    return every > 0 and int(hashlib.sha1(Path(image).name.encode()).hexdigest()[:8], 16) % every == 0


# ---- the simulated user -------------------------------------------------------------------------
def deepest_point(region: np.ndarray, rng: np.random.Generator | None = None, spread: float = 0.0
                  ) -> tuple[int, int] | None:
    """(row, col) of the region's pixel farthest from its edge, the middle one when several are
    (``spread`` > 0: a random pixel at least (1 - spread) times that deep), or None for an empty region."""
    if not region.any():
        return None
    depth = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    if rng is None or spread <= 0:  # the middle of the deepest ridge (a rectangle's centre, not its ridge's end)
        ridge = np.argwhere(depth >= depth.max() - 0.5)
        middle = ridge[int(np.argmin(((ridge - ridge.mean(0)) ** 2).sum(1)))]
        return int(middle[0]), int(middle[1])
    candidates = np.argwhere(depth >= (1 - spread) * depth.max())
    return tuple(int(v) for v in candidates[rng.integers(len(candidates))])


def corrective_click(truth: np.ndarray, prediction: np.ndarray) -> tuple[int, int, bool] | None:
    """The next click of the standard click robot: the deepest point of the larger error (missed
    object: positive; false object: negative). None when there is no error."""
    missed, extra = truth & ~prediction, prediction & ~truth
    best = None
    for region, positive in ((missed, True), (extra, False)):
        if not region.any():
            continue
        depth = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
        if best is None or depth.max() > best[0]:
            r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
            best = (float(depth.max()), int(r), int(c), positive)
    return None if best is None else best[1:]


def _background_point(truth: np.ndarray, others: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """A negative click: on another object, in a band around this one, or anywhere outside."""
    size = math.sqrt(max(int(truth.sum()), 1))
    band = cv2.dilate(truth.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(2, int(0.4 * size))) > 0
    choices = [others & ~truth, band & ~truth, ~truth]
    region = choices[int(rng.choice(3, p=(0.35, 0.45, 0.2)))]
    if not region.any():
        region = ~truth
    return deepest_point(region, rng, spread=0.9)


def simulate_marks(truth: np.ndarray, others: np.ndarray, rng: np.random.Generator, click_p: float = 0.6
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A first interaction on ``truth``: (positive, negative) bool marks."""
    shape = truth.shape
    if rng.random() < click_p:
        positives = [deepest_point(truth, rng, spread=0.3)]
        positives += [deepest_point(truth, rng, spread=0.8) for _ in range(int(rng.choice(3, p=(0.6, 0.25, 0.15))))]
        negatives = [_background_point(truth, others, rng) for _ in range(int(rng.choice(3, p=(0.5, 0.3, 0.2))))]
        pos = click_disks([(c, r) for r, c in positives if r is not None], shape)
        bad = [(c, r) for p in negatives if p is not None for r, c in [p]]
        neg = click_disks(bad, shape) if bad else np.zeros(shape, bool)
        return pos & truth, neg & ~truth
    pos = skeleton_strokes(truth, rng) if rng.random() < 0.7 else random_walk_stroke(truth, rng)
    if not pos.any():
        pos = click_disks([deepest_point(truth)[::-1]], shape) & truth
    neg = np.zeros(shape, bool)
    if rng.random() < 0.5:
        target = others & ~truth if others.any() and rng.random() < 0.5 else (
            cv2.dilate(truth.astype(np.uint8), np.ones((9, 9), np.uint8), iterations=4).astype(bool) & ~truth)
        if target.any():
            neg = random_walk_stroke(target, rng)
    return pos, neg & ~truth


def add_click(marks: tuple[np.ndarray, np.ndarray], click: tuple[int, int, bool]) -> tuple[np.ndarray, np.ndarray]:
    r, c, positive = click
    disk = click_disks([(c, r)], marks[0].shape)
    return (marks[0] | disk, marks[1] & ~disk) if positive else (marks[0] & ~disk, marks[1] | disk)


# ---- samples ----------------------------------------------------------------------------------
@dataclass
class InteractionSample:
    features: list[Tensor]  # f4, f8, f16 of the crop, (C, crop/s, crop/s)
    truth: np.ndarray  # (crop, crop) bool: the target object
    valid: np.ndarray  # (crop, crop) bool: pixels the loss counts (not void)
    others: np.ndarray  # (crop, crop) bool: the other objects
    positive: np.ndarray
    negative: np.ndarray


class InteractionSamples:
    """Crops of cached static images with one target object and a simulated first interaction."""

    def __init__(self, cfg: InteractionTrainConfig, cache: FeatureCache, held_out: bool = False) -> None:
        pairs = image_mask_pairs(cfg.roots)
        self.pairs = [p for p in pairs if is_held_out(p[0], cfg.held_out_every) == held_out]
        if not self.pairs:
            raise InputError(Path(cfg.roots[0]), "no images left for training after the held-out split")
        self.cfg, self.cache = cfg, cache
        self.aug = ClipAugment(crop=cfg.crop, scale=(0.75, 1.35))

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, number: int) -> InteractionSample:
        rng = sample_rng(self.cfg.seed, number)
        min_pixels = self.cfg.min_object_fraction * self.cfg.crop ** 2
        for attempt in range(20):
            image = self.cache.get(*self.pairs[int(rng.integers(len(self.pairs)))])
            features, labels = warp_view(image, random_affine(rng, image.labels.shape, self.aug), self.cfg.crop,
                                         flip=bool(rng.random() < 0.5))
            ids = [i for i in object_ids(labels) if np.count_nonzero(labels == i) >= min_pixels]
            if ids or attempt == 19:
                break
        if not ids:
            raise InputError(self.pairs[0][0].parent, "no crop with an object large enough after 20 tries")
        target = int(ids[int(rng.integers(len(ids)))])
        truth = labels == target
        others = (labels > 0) & (labels != 255) & ~truth
        positive, negative = simulate_marks(truth, others, rng, self.cfg.click_p)
        return InteractionSample(features, truth, labels != 255, others, positive, negative)


def batch_tensors(samples: list[InteractionSample], current: list[np.ndarray | None] | None = None,
                  near: float = InteractionNetConfig.near) -> tuple[tuple[Tensor, ...], Tensor, Tensor, Tensor]:
    """-> features (3 levels, each (B, C, h, w)), guidance (B, 5, H, W), truth and valid (B, 1, H, W)."""
    current = current or [None] * len(samples)
    features = tuple(torch.stack([s.features[i] for s in samples]) for i in range(3))
    guidance = torch.from_numpy(np.stack([guidance_planes(s.positive, s.negative, c, near)
                                          for s, c in zip(samples, current)]))
    truth = torch.from_numpy(np.stack([s.truth for s in samples])[:, None]).float()
    valid = torch.from_numpy(np.stack([s.valid for s in samples])[:, None]).float()
    return features, guidance, truth, valid


def mask_loss(logits: Tensor, truth: Tensor, valid: Tensor) -> Tensor:
    """Binary cross-entropy plus soft-IoU loss over valid pixels (void excluded)."""
    bce = (F.binary_cross_entropy_with_logits(logits, truth, reduction="none") * valid).sum() / valid.sum().clamp(min=1)
    prob = torch.sigmoid(logits) * valid
    inter = (prob * truth).sum((1, 2, 3))
    union = (prob + truth * valid - prob * truth).sum((1, 2, 3))
    return bce + (1 - (inter + 1) / (union + 1)).mean()


# ---- training -------------------------------------------------------------------------------------
def _lr(iteration: int, cfg: InteractionTrainConfig) -> float:
    if iteration < cfg.warmup:
        return cfg.lr * (iteration + 1) / cfg.warmup
    progress = min((iteration - cfg.warmup) / max(cfg.iterations - cfg.warmup, 1), 1.0)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_cache(cfg: InteractionTrainConfig) -> FeatureCache:
    from memvos.model.backbones import build_backbone

    backbone = build_backbone("efficientnet-lite0", output_stride=16, pretrained=True)
    backbone.requires_grad_(False)
    return FeatureCache(backbone, "efficientnet-lite0-s16", cfg.feature_cache, cfg.cache_short_side)


def self_correct(net: InteractionNet, samples: list[InteractionSample], features, guidance: Tensor
                 ) -> list[np.ndarray]:
    """A correction round on the network's own output: each sample gets the robot's next click on
    its prediction's largest error, and that prediction as the current mask."""
    with torch.no_grad():
        probs = torch.sigmoid(net(features, guidance))[:, 0].numpy()
    current = []
    for sample, prob in zip(samples, probs):
        click = corrective_click(sample.truth, prob > 0.5)
        if click is not None:
            sample.positive, sample.negative = add_click((sample.positive, sample.negative), click)
        current.append(prob.astype(np.float32))
    return current


def train_interaction(cfg: InteractionTrainConfig, resume: bool = False) -> Path:
    """Train (or resume) and export ``OUT/model.safetensors``; returns its path."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = build_cache(cfg)
    data = InteractionSamples(cfg, cache)
    torch.manual_seed(cfg.seed)
    net = InteractionNet(InteractionNetConfig(width=cfg.width), channels=cache.backbone.channels)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise InputError(last, "nothing to resume: no last.pt in the output folder")
        state = torch.load(last, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["iteration"])
    elif cfg.init:
        net.load_state_dict(_initial_weights(cfg.init, net.config))
    log_path = out / "log.jsonl"

    def batches():
        for it in range(start, cfg.iterations):
            yield it, [data.sample(it * cfg.batch_size + i) for i in range(cfg.batch_size)]

    net.train()
    began, losses = time.perf_counter(), []
    for it, samples in prefetch(batches(), depth=2):
        features, guidance, truth, valid = batch_tensors(samples)
        if sample_rng(cfg.seed + 1, it).random() < cfg.self_correct:
            current = self_correct(net, samples, features, guidance)
            features, guidance, truth, valid = batch_tensors(samples, current)
        for group in optimizer.param_groups:
            group["lr"] = _lr(it, cfg)
        loss = mask_loss(net(features, guidance), truth, valid)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
        optimizer.step()
        losses.append(float(loss.detach()))
        done = it + 1
        if done % cfg.log_every == 0 or done == cfg.iterations:
            row = {"iteration": done, "loss": float(np.mean(losses)), "lr": _lr(it, cfg),
                   "s_per_it": (time.perf_counter() - began) / len(losses)}
            log.info("interaction %d/%d loss %.4f (%.2f s/it)", done, cfg.iterations, row["loss"], row["s_per_it"])
            with open(log_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            began, losses = time.perf_counter(), []
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            with atomic_path(last) as tmp:
                torch.save({"net": net.state_dict(), "optimizer": optimizer.state_dict(), "iteration": done}, tmp)
        if done in cfg.snapshots:
            save_interaction_net(net, snapshot_path(out, done))
    net.eval()
    weights = out / WEIGHTS_NAME
    save_interaction_net(net, weights)
    return weights


def _initial_weights(path: str | Path, config: InteractionNetConfig) -> dict[str, Tensor]:
    """The state dict of interaction weights (to start from, or to average), checked against the
    network's config."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "init weights not found")
    saved = interaction_config_of(path)
    if saved != config:
        raise InputError(path, f"weights of another interaction network ({saved}, not {config})")
    return {k: v.float() for k, v in load_file(str(path)).items()}


def average_interaction_weights(inputs: list[str | Path], out: str | Path) -> InteractionNetConfig:
    """The parameter-wise mean of several interaction-network weights of one config (snapshots of
    one run, as ``memvos average`` does for the memory network) -> fp16 safetensors at ``out``."""
    if len(inputs) < 2:
        raise InputError(None, "averaging needs at least two weight files")
    check_output(out, "file", inputs=tuple(inputs))
    config = interaction_config_of(inputs[0])

    def states():
        for path in inputs:
            if not is_interaction_weights(path):
                raise InputError(path, "not interaction-network weights (no interaction_net config in the file)")
            yield path, _initial_weights(path, config)  # refuses another network's weights, naming the file

    save_interaction_state(mean_state(states()), config, out)
    return config


# ---- evaluation -----------------------------------------------------------------------------------
def click_ious(predict, truth: np.ndarray, clicks: int = 3) -> list[float]:
    """IoU after each of ``clicks`` robot clicks (the first at the object's deepest point, then on
    the largest error). ``predict(positive, negative, current) -> (H, W) probability``."""
    positive, negative = np.zeros_like(truth), np.zeros_like(truth)
    click = (*deepest_point(truth), True)
    current, ious = None, []
    for _ in range(clicks):
        positive, negative = add_click((positive, negative), click)
        current = predict(positive, negative, current)
        mask = current > 0.5
        ious.append(float((mask & truth).sum() / max((mask | truth).sum(), 1)))
        click = corrective_click(truth, mask)
        if click is None:
            ious += [ious[-1]] * (clicks - len(ious))
            break
    return ious


def held_out_objects(net: InteractionNet, cfg: InteractionTrainConfig, cache: FeatureCache,
                     min_fraction: float = 0.01, clicker: ClickToMask | None = None, mirror: bool = False,
                     first_touch: ClickToMask | None = None, keep_near: float | None = None):
    """Yield (folder name, truth, predict) for every object (>= ``min_fraction`` of its image) of
    the held-out images, whole images at the cache's size; ``predict(positive, negative, current)``
    is the network's (H, W) probability on that image (what ``click_ious`` drives). From the cached
    features, or with ``clicker`` from the image as a session runs it (``mirror``: with its mirror
    image; ``first_touch``: this network answers while there is no mask yet, its output trimmed by
    ``keep_near_marks(keep_near)`` as a session does)."""
    net.eval()
    for image_path, mask_path in InteractionSamples(cfg, cache, held_out=True).pairs:
        image: CachedImage = cache.get(image_path, mask_path)
        if clicker is None:
            features = tuple(f[None].float() for f in image.features)

            def predict(positive, negative, current, features=features):
                planes = torch.from_numpy(guidance_planes(positive, negative, current, net.config.near))[None]
                with torch.no_grad():
                    return torch.sigmoid(net(features, planes))[0, 0].numpy()
        else:
            h, w = image.labels.shape
            rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            features = clicker.features(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, mirror=mirror)

            def predict(positive, negative, current, features=features):
                first = first_touch is not None and (current is None or is_first_touch(current))
                prob = (first_touch if first else clicker).predict(features, positive, negative, current).numpy()
                return keep_near_marks(prob, positive, keep_near) if first and keep_near is not None else prob

        for obj in object_ids(image.labels):
            truth = image.labels == obj
            if truth.mean() >= min_fraction:
                yield image_path.parent.parent.name, truth, predict
