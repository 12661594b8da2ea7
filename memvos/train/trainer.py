"""The training loop: AdamW with warm-up + cosine decay, gradient clipping, bootstrapped loss,
atomic resumable checkpoints, CSV (+ TensorBoard) logs, validation with the best checkpoint
kept, and DistributedDataParallel under ``torchrun`` (NCCL on GPUs, gloo on CPU).

Resuming is exact: samples are a pure function of (seed, sample number) and the sample
number follows from the iteration, so a checkpoint's iteration is the sampler position;
optimiser, scheduler and RNG states are restored with it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import pickle
import random
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from memvos.config import MemvosConfig, config_from_dict, load_config
from memvos.data.atomic import atomic_path, check_output
from memvos.data.datasets import open_dataset
from memvos.data.static_clips import ClipAugment, hide_probability
from memvos.errors import InputError
from memvos.model.factory import build_model, check_device, load_checkpoint, save_checkpoint
from memvos.model.frozen_key import FrozenKeyConfig
from memvos.model.memory_read import ReadConfig
from memvos.train.averaging import mean_state
from memvos.train.config import TrainConfig, config_to_dict, snapshot_path
from memvos.train.data import (
    StaticClips,
    VideoClips,
    collate,
    collate_interaction,
    interaction_rng,
    is_plain,
    plain_round,
    skip_curriculum,
    with_interaction,
)
from memvos.train.feature_cache import (
    CachedStaticClips,
    CachedVideoClips,
    FeatureCache,
    MixedClips,
    collate_features,
)
from memvos.train.loss import bootstrap_fraction, clip_loss
from memvos.train.splits import excluded_names
from memvos.train.validate import validate, validation_sequences

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"
LOG_FIELDS = ("iteration", "loss", "lr", "it_per_s", "hide_p", "max_skip", "val_jf", "world_size")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the process group ``torchrun`` describes (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(requested: str, local_rank: int) -> str:
    if requested == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    return requested


def model_config(cfg: TrainConfig) -> MemvosConfig:
    """The model's config: a preset, YAML file or mapping, with ``model_options`` set over its
    ``model`` section (switches of the same preset, e.g. the instance-aware head's)."""
    config = config_from_dict(cfg.model) if isinstance(cfg.model, dict) else load_config(cfg.model)
    if cfg.model_options:
        config.model = {**config.model, **cfg.model_options}
    return config


def excluded_sequences(cfg: TrainConfig) -> dict[str, list[str]]:
    """Dataset folder name -> sequences training leaves out (``data.exclude_split``)."""
    split = cfg.data.exclude_split
    if not split:
        return {}
    return {Path(root).name: excluded_names(split, Path(root).name) for root in cfg.data.roots}


def build_dataset(cfg: TrainConfig, model: nn.Module | None = None):
    """The stage's clips: from pixels, or from cached backbone features (``data.feature_cache``;
    ``model``'s frozen backbone computes them)."""
    d = cfg.data
    aug = ClipAugment(crop=d.crop, max_objects=d.max_objects)
    exclude = excluded_sequences(cfg)
    if d.feature_cache:
        if model is None or not hasattr(model, "query_from_features"):
            raise InputError(None, f"data.feature_cache needs a frozen-key model, not {cfg.model!r}")
        c = model.config
        cache = FeatureCache(model.backbone, f"{c.backbone}-s{c.output_stride}", d.feature_cache, d.cache_short_side)
        if d.kind == "static":
            return CachedStaticClips(d.roots, aug, cache, hide_and_seek=d.hide_and_seek, hide_max=d.hide_max,
                                     paste=d.paste)
        video = CachedVideoClips(d.roots, aug, cache, exclude=exclude, skip=d.skip, scale=d.scale)
        if d.static_roots and d.static_fraction > 0:
            return MixedClips(video, CachedStaticClips(d.static_roots, aug, cache, hide_and_seek=False), d.static_fraction)
        return video
    if d.kind == "static":
        return StaticClips(d.roots, aug, hide_and_seek=d.hide_and_seek, hide_max=d.hide_max, hide_fill=d.hide_fill)
    names = None
    if exclude:
        names = [n for n in open_dataset(d.roots[0], d.split).sequences if n not in exclude[Path(d.roots[0]).name]]
    return VideoClips(d.roots[0], aug, split=d.split, exclude_last=d.exclude_last, skip=d.skip, sequences=names)


def warm_cache(dataset, show: bool) -> None:
    """Compute the features of every image the dataset can sample (those already cached are kept)."""
    for image, mask in tqdm(dataset.items(), desc="feature cache", disable=not show, dynamic_ncols=True):
        if not dataset.cache.path_for(image).is_file():
            dataset.cache.get(image, mask)


def lr_factor(iteration: int, spec) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at the last iteration."""
    if iteration < spec.warmup:
        return (iteration + 1) / spec.warmup
    progress = (iteration - spec.warmup) / max(spec.iterations - spec.warmup, 1)
    return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def load_initial_weights(model: nn.Module, path: str) -> None:
    """Start from an exported ``.safetensors`` or a training checkpoint (``.pt``).

    Weights may lack the parameters of modules the model lists in ``optional_weights`` (new
    modules that start as the identity, e.g. the instance-aware head): those keep their
    initialisation, are logged, and the model's ``initialise_missing`` hook sees them."""
    state = widen_inputs(read_weights(path)[0], model.state_dict())
    missing, unexpected = model.load_state_dict(state, strict=False)
    optional = tuple(getattr(model, "optional_weights", ()))
    fresh = [k for k in missing if optional and k.startswith(optional)]
    missing = [k for k in missing if k not in fresh]
    if missing or unexpected:
        raise InputError(path, f"weights do not fit the model: missing {list(missing)[:3]}, "
                               f"unexpected {list(unexpected)[:3]}")
    if fresh:
        log.info("%s lacks %d new parameter(s), which keep their initialisation: %s", path, len(fresh),
                 ", ".join(fresh))
        if hasattr(model, "initialise_missing"):
            model.initialise_missing(fresh)


def widen_inputs(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convolutions of ``reference`` that take more input channels than those of ``state``
    (an interactive model's stroke channels, started from semi-supervised weights) get the
    old weights for the old channels and zeros for the new ones, so they start as the old model."""
    out = dict(state)
    for name, old in state.items():
        new = reference.get(name)
        if new is None or new.shape == old.shape or new.dim() != 4 or old.dim() != 4:
            continue
        if new.shape[0] == old.shape[0] and new.shape[2:] == old.shape[2:] and new.shape[1] > old.shape[1]:
            wide = torch.zeros(new.shape, dtype=old.dtype)
            wide[:, : old.shape[1]] = old
            out[name] = wide
    return out


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model state and config (as a mapping) of exported weights (``.safetensors``) or of a
    training checkpoint (``.pt``); one-line errors naming the file."""
    if str(path).endswith(".safetensors"):
        model, config = load_checkpoint(path)
        return model.state_dict(), config.to_dict()
    state = read_training_state(path)
    return state["model"], state["memvos_config"]


def read_training_state(path: str | Path) -> dict[str, Any]:
    """A training checkpoint (``.pt`` from ``Trainer.save``), or a one-line error naming the file
    (missing, truncated, a text file, not a memvos checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "training checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, IndexError,
            UnicodeDecodeError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise InputError(path, f"not a readable training checkpoint (truncated or not one: {reason})") from None
    if not isinstance(state, dict) or "model" not in state or "memvos_config" not in state:
        raise InputError(path, "not a memvos training checkpoint (no model state and config in it)")
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """One training stage; ``run()`` trains to ``train.iterations`` and returns the exported weights."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, out: str | Path | None = None) -> None:
        self.cfg, spec = cfg, cfg.train
        self.out = Path(out or cfg.out)
        requested = check_device(pick_device(spec.device, int(os.environ.get("LOCAL_RANK", "0"))))
        self.dist = setup_distributed(requested)
        self.device = requested
        if spec.threads:
            torch.set_num_threads(spec.threads)
        torch.manual_seed(spec.seed + self.dist.rank)
        np.random.seed(spec.seed + self.dist.rank)
        random.seed(spec.seed + self.dist.rank)

        self.memvos_config = model_config(cfg)
        self.inference_read = self.memvos_config.read
        self.train_read = ReadConfig(**{**vars(self.inference_read), "mode": "stm"})  # no KMN kernel in training
        try:
            self.model = build_model(self.memvos_config, pretrained=self.memvos_config.model.get("pretrained", True))
        except (TypeError, ValueError) as err:  # e.g. a bad switch in model_options
            raise InputError(None, f"model {cfg.model!r}: {err}") from None
        self.interactive = bool(self.memvos_config.model.get("scribbles", False))  # train with a simulated user
        if cfg.init:
            load_initial_weights(self.model, cfg.init)
        self.model.read.config = self.train_read
        self.model.to(self.device).train()
        self.net: nn.Module = self.model
        if self.dist.world > 1:
            ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda i: lr_factor(i, spec))
        self.dataset = build_dataset(cfg, self.model)
        self.cached = bool(cfg.data.feature_cache)
        if self.cached:
            if self.interactive:
                raise InputError(None, "data.feature_cache does not support interactive models yet")
            warm_cache(self.dataset, self.dist.main)
        self.iteration, self.best = 0, -math.inf
        self.val_sequences = validation_sequences(cfg.validate) if cfg.validate.every and cfg.validate.root else []
        if resume:
            self._resume()
        elif self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train-config.json").write_text(json.dumps(config_to_dict(cfg), indent=1))

    # ---- checkpoints --------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "iteration": self.iteration, "best": self.best,
                "rng": rng_state(), "memvos_config": self.memvos_config.to_dict(),
                "train_config": config_to_dict(self.cfg), "world_size": self.dist.world}

    def save(self, name: str = LAST) -> Path:
        path = self.out / name
        with atomic_path(path) as tmp:
            torch.save(self._state(), tmp)
        return path

    def _resume(self) -> None:
        path = self.out / LAST
        if not path.is_file():
            raise InputError(path, "no checkpoint to resume from (run without --resume first)")
        state = read_training_state(path)
        if state.get("world_size", 1) != self.dist.world:
            raise InputError(path, f"checkpoint was written by {state['world_size']} process(es), "
                                   f"this run has {self.dist.world}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration, self.best = state["iteration"], state["best"]
        set_rng_state(state["rng"])
        if self.dist.main:
            self._truncate_log(self.iteration)

    # ---- logging ------------------------------------------------------------------------
    def _truncate_log(self, iteration: int) -> None:
        """Rows logged after the checkpoint will be logged again: drop them."""
        log = self.out / "log.csv"
        if log.is_file():
            rows = [r for r in csv.DictReader(log.open()) if int(r["iteration"]) <= iteration]
            with atomic_path(log) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, LOG_FIELDS)
                writer.writeheader()
                writer.writerows(rows)

    def _log(self, row: dict[str, Any]) -> None:
        log = self.out / "log.csv"
        new = not log.is_file()
        with open(log, "a", newline="") as fh:
            writer = csv.DictWriter(fh, LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
        if self.tensorboard is not None:
            for key in ("loss", "lr", "val_jf"):
                if row.get(key) not in (None, ""):
                    self.tensorboard.add_scalar(key, float(row[key]), row["iteration"])

    # ---- the loop -----------------------------------------------------------------------
    def batch(self, iteration: int) -> tuple[torch.Tensor, ...]:
        """This rank's clips for ``iteration`` (global sample numbers never overlap across ranks):
        frames, labels, object counts, and for an interactive model the simulated user's prior
        masks and strokes on frame 0."""
        spec, total = self.cfg.train, self.cfg.train.iterations
        first = (iteration * self.dist.world + self.dist.rank) * spec.batch_size
        numbers = range(first, first + spec.batch_size)
        samples = [self.dataset.sample(spec.seed, n, iteration, total) for n in numbers]
        if self.cached:
            return collate_features(samples, self.cfg.data.max_objects)
        if not self.interactive:
            return collate(samples, self.cfg.data.max_objects)
        prior, plain = self.cfg.data.interaction_prior, self.cfg.data.plain_fraction
        samples = [plain_round(s) if is_plain(spec.seed, n, plain)
                   else with_interaction(s, interaction_rng(spec.seed, n), prior) for s, n in zip(samples, numbers)]
        return (*collate(samples, self.cfg.data.max_objects), *collate_interaction(samples))

    def step(self, iteration: int) -> float:
        spec = self.cfg.train
        top = bootstrap_fraction(iteration, spec.bootstrap_warmup, spec.bootstrap_top)
        batch = [x.to(self.device) for x in self.batch(iteration)]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda")):
            if self.cached:
                *features, labels, counts = batch
                log_probs = self.net(None, labels, counts, None, tuple(features))
            else:
                frames, labels, counts, *interaction = batch
                log_probs = self.net(frames, labels, counts, *([tuple(interaction)] if interaction else []))
        loss = clip_loss(log_probs.float(), labels, top)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if spec.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], spec.clip_grad)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def run(self) -> Path:
        spec, main = self.cfg.train, self.dist.main
        self.tensorboard = _tensorboard(self.out) if main else None
        bar = tqdm(total=spec.iterations, initial=self.iteration, disable=not main, desc=self.cfg.name,
                   dynamic_ncols=True)
        losses, tick = [], time.perf_counter()
        while self.iteration < spec.iterations:
            losses.append(self.step(self.iteration))
            self.iteration += 1
            bar.update(1)
            done_log = self.iteration % spec.log_every == 0 or self.iteration == spec.iterations
            val = self._maybe_validate()
            if main and (done_log or val is not None):
                now = time.perf_counter()
                speed = len(losses) / max(now - tick, 1e-9)
                row = {"iteration": self.iteration, "loss": f"{np.mean(losses):.5f}",
                       "lr": f"{self.scheduler.get_last_lr()[0]:.3e}", "it_per_s": f"{speed:.3f}",
                       "hide_p": self._hide_p(), "max_skip": self._max_skip(), "world_size": self.dist.world,
                       "val_jf": "" if val is None else f"{val:.4f}"}
                bar.set_postfix(loss=row["loss"], it_s=row["it_per_s"], **({"val": row["val_jf"]} if val else {}))
                self._log(row)
                losses, tick = [], time.perf_counter()
            if main and self.iteration in spec.snapshots:
                self.export(snapshot_path(self.out, self.iteration))
            if self.iteration % spec.checkpoint_every == 0 or self.iteration == spec.iterations:
                if main:
                    self.save(LAST)
                self._barrier()
        bar.close()
        final = self.out / "model.safetensors"
        if main:
            self.export(final)
        self._barrier()
        return final

    def _maybe_validate(self) -> float | None:
        v = self.cfg.validate
        if not self.val_sequences or self.iteration % v.every != 0:
            return None
        score = None
        if self.dist.main:
            score = validate(self.model, self.val_sequences, v, self.inference_read, self.memvos_config.inference.memory,
                             self.device)
            if score > self.best:
                self.best = score
                self.save(BEST)
        self._barrier()
        return score

    def export(self, path: Path) -> None:
        save_checkpoint(self.model, self.memvos_config, path)

    def _hide_p(self) -> str:
        d = self.cfg.data
        if d.kind != "static" or not d.hide_and_seek:
            return ""
        return f"{hide_probability(self.iteration, self.cfg.train.iterations, d.hide_max):.3f}"

    def _max_skip(self) -> str:
        d = self.cfg.data
        return "" if d.kind != "video" else str(skip_curriculum(self.iteration / self.cfg.train.iterations, d.skip))

    def _barrier(self) -> None:
        if self.dist.world > 1:
            dist.barrier()


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


def average_weights(inputs: Sequence[str | Path], out: str | Path) -> MemvosConfig:
    """The mean of several weights of one network (points of one training run: a free ensemble,
    as stochastic weight averaging) -> fp16 safetensors with the first input's config. Inputs whose
    parameters differ in names or shapes are refused with a one-line error naming the file."""
    if len(inputs) < 2:
        raise InputError(None, "averaging needs at least two weight files")
    check_output(out, "file", inputs=tuple(inputs))
    first_state, first_config = read_weights(inputs[0])
    try:
        config = config_from_dict(first_config)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(inputs[0], f"cannot average: {err}") from None
    mean = mean_state(chain([(inputs[0], first_state)], ((path, read_weights(path)[0]) for path in inputs[1:])))
    model = build_model(config, pretrained=False)
    model.load_state_dict(mean)
    save_checkpoint(model, config, out)
    return config


def export_checkpoint(checkpoint: str | Path, out: str | Path, output_stride: int | None = None) -> MemvosConfig:
    """A training checkpoint (``.pt``) or exported weights (``.safetensors``) -> fp16 safetensors with
    its config (what ``--checkpoint`` loads). ``output_stride`` (frozen-key networks) re-targets the
    same weights to keys at stride 8 or 16: the parameters do not depend on the stride; the KMN
    kernel's width in cells is scaled so that it stays the same in pixels."""
    path = Path(checkpoint)
    check_output(out, "file", inputs=(path,))
    state, config_dict = read_weights(path)
    try:
        config = config_from_dict(config_dict)
        if output_stride is not None:
            if config.model_type != "frozen-key-stm" or output_stride not in (8, 16):
                raise ValueError(f"--output-stride takes 8 or 16 for a frozen-key network (this is {config.model_type})")
            old = int(config.model.get("output_stride", FrozenKeyConfig.output_stride))
            read = dataclasses.replace(config.read, sigma=config.read.sigma * old / output_stride)  # same width in pixels
            config = dataclasses.replace(config, model={**config.model, "output_stride": output_stride}, read=read)
    except (KeyError, TypeError, RuntimeError, OSError, ValueError) as err:
        raise InputError(path, f"cannot export: {err}") from None
    model = build_model(config, pretrained=False)
    model.load_state_dict(state)
    save_checkpoint(model, config, out)
    return config
