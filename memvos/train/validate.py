"""Cheap validation during training: J&F on held-out sequences, downsized and truncated."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from memvos.data.datasets import open_dataset
from memvos.eval.metrics import f_measure, jaccard
from memvos.inference.core import InferenceConfig, InferenceCore
from memvos.inference.memory import MemoryPolicy
from memvos.model.memory_read import ReadConfig
from memvos.train.config import ValidateSpec


@contextlib.contextmanager
def read_config(model: nn.Module, config: ReadConfig) -> Iterator[None]:
    """Temporarily read memory with ``config`` (training uses ``stm``, inference may use ``kmn``)."""
    old = model.read.config
    model.read.config = config
    try:
        yield
    finally:
        model.read.config = old


def validation_sequences(spec: ValidateSpec) -> list:
    dataset = open_dataset(spec.root, spec.split)
    names = spec.sequences or (dataset.sequences[-spec.last :] if spec.last else dataset.sequences)
    return [dataset[n] for n in names]


@torch.no_grad()
def validate(model: nn.Module, sequences: list, spec: ValidateSpec, read: ReadConfig, policy: MemoryPolicy,
             device: str = "cpu") -> float:
    """Mean J&F over ``sequences`` (first-frame masks, at most ``spec.max_frames`` frames each,
    first and last scored frame excluded as in DAVIS)."""
    was_training = model.training
    model.eval()
    scores = []
    with read_config(model, read):
        for seq in sequences:
            config = InferenceConfig(memory=policy, max_short_side=spec.short_side, device=device)
            core = InferenceCore(model, config)
            names = seq.frames.names[: spec.max_frames]
            gts, preds = [], []
            for i, name in enumerate(names):
                gt = seq.read_annotation(name) if name in seq.annotations else None
                probs = core.step(seq.frames[i], gt if i == 0 else None)
                if 0 < i < len(names) - 1 and gt is not None:
                    gts.append(gt)
                    preds.append(core.labels(probs))
            for obj in core.object_ids:
                j = [jaccard(g == obj, p == obj) for g, p in zip(gts, preds)]
                f = [f_measure(g == obj, p == obj) for g, p in zip(gts, preds)]
                if j:
                    scores.append((np.mean(j) + np.mean(f)) / 2)
    model.train(was_training)
    return float(np.mean(scores)) if scores else float("nan")
