"""Try training-free settings on DAVIS tuning clips (never on the 6 held-out ones).

Usage:
    python benchmarks/tune_training_free.py --davis ../shared/data/davis2016-train \
        --sequences motocross-bumps breakdance-flare --set sigma=4.0 hard_memory=False recent=2

``--set`` overrides fields of the training-free model (backbone, output_stride, deep16,
hard_memory, refine...), of the memory read (mode, sigma, top_k, temperature, argmax_stride)
and of the memory policy (every, recent, max_frames), starting from training-free-lite0.
Prints J, F and J&F per clip (DAVIS definitions, first and last frame not scored).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from memvos.config import load_config
from memvos.data.datasets import DavisDataset
from memvos.data.masks import object_ids
from memvos.eval.metrics import f_measure, jaccard
from memvos.inference.core import InferenceCore
from memvos.inference.memory import MemoryPolicy
from memvos.model.memory_read import ReadConfig
from memvos.model.training_free import TrainingFreeConfig, TrainingFreeModel


def parse_settings(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def split(settings: dict, cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in settings.items() if k in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--sequences", nargs="+", required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = parse_settings(args.set)
    base = load_config("training-free-lite0")
    read = dataclasses.replace(base.read, **split(settings, ReadConfig))
    model_options = {k: v for k, v in base.model.items() if k != "type"}
    model = TrainingFreeModel(TrainingFreeConfig(**{**model_options, **split(settings, TrainingFreeConfig)},
                                                 read=read))
    inference = dataclasses.replace(base.inference, memory=dataclasses.replace(base.inference.memory,
                                                                               **split(settings, MemoryPolicy)))
    dataset = DavisDataset(args.davis, split="train")
    if set(args.sequences) & set(dataset.sequences[-6:]):
        parser.error("those sequences are held out for reporting; tune on others")
    scores = []
    for name in args.sequences:
        seq = dataset[name]
        core = InferenceCore(model, inference)
        js, fs = [], []
        objects = object_ids(seq.read_annotation(seq.frames.names[0]))
        start = time.perf_counter()
        for t, frame in enumerate(seq.frames):
            gt = seq.read_annotation(seq.frames.names[t])
            labels = core.labels(core.step(frame, gt if t == 0 else None))
            if 0 < t < len(seq.frames) - 1:
                for obj in objects:
                    js.append(jaccard(gt == obj, labels == obj))
                    fs.append(f_measure(gt == obj, labels == obj))
        seconds = (time.perf_counter() - start) / len(seq.frames)
        scores.append((np.mean(js) + np.mean(fs)) / 2)
        print(f"{name:20s} J={np.mean(js):.3f} F={np.mean(fs):.3f} J&F={scores[-1]:.3f} {seconds:.2f}s/frame", flush=True)
    print(f"MEAN J&F {np.mean(scores):.3f} settings={settings}")


if __name__ == "__main__":
    main()
