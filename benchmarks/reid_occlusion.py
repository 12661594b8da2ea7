"""Online vs re-identification vs offline on the synthetic occlusion clip (memvos.data.synthetic.
make_occlusion_clip): a cat-face disc hides behind a wall for ~13 frames while a tinted
look-alike walks in.

Usage:
    python benchmarks/reid_occlusion.py [--checkpoint FILE] [--frames 40] [--threads 2]

Prints J&F over the clip's frames (first and last excluded, as DAVIS does) and the frames
where each mode has the object wrong: visible but IoU < 0.5, or hidden but predicted.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from memvos.data.synthetic import make_occlusion_clip
from memvos.eval.metrics import f_measure, jaccard
from memvos.inference.core import InferenceCore
from memvos.inference.offline import segment_offline
from memvos.inference.reid import ReidConfig
from memvos.model.loading import load_models


def score(gt: list[np.ndarray], pred: list[np.ndarray]) -> tuple[float, float, list[int]]:
    """Mean J, mean F over frames 1..n-2 and the frames where the object is wrong."""
    js, fs, wrong = [], [], []
    for t, (g, p) in enumerate(zip(gt, pred)):
        g1, p1 = g == 1, p == 1
        j = jaccard(g1, p1)
        if 0 < t < len(gt) - 1:
            js.append(j)
            fs.append(f_measure(g1, p1))
        if j < 0.5:
            wrong.append(t)
    return float(np.mean(js)), float(np.mean(fs)), wrong


def online(clip, models, config) -> list[np.ndarray]:
    core = InferenceCore(models, config)
    return [core.labels(core.step(f, clip.labels[0] if t == 0 else None)) for t, f in enumerate(clip.frames)]


def spans(frames: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    out, start = [], None
    for i, t in enumerate(frames):
        if start is None:
            start = t
        if i + 1 == len(frames) or frames[i + 1] != t + 1:
            out.append(f"{start}-{t}" if t > start else f"{t}")
            start = None
    return ", ".join(out) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip = make_occlusion_clip(args.frames)
    hidden = [t for t, g in enumerate(clip.labels) if not (g == 1).any()]
    print(f"clip: {len(clip.frames)} frames, object fully hidden on frames {spans(hidden)}")
    models, config = load_models(args.checkpoint, None, "cpu")
    base = config.inference
    runs = {
        "online (KMN)": lambda: online(clip, models, base),
        "online + re-id": lambda: online(clip, models, dataclasses.replace(base, reid=ReidConfig())),
        "offline (re-id + bidirectional)": lambda: segment_offline(clip.frames, {0: clip.labels[0]}, models,
                                                                   dataclasses.replace(base, reid=ReidConfig()))[0],
    }
    print(f"{'mode':34s} {'J&F':>6s} {'J':>6s} {'F':>6s} {'s/frame':>8s}  object wrong on frames")
    for name, run in runs.items():
        start = time.perf_counter()
        pred = run()
        seconds = (time.perf_counter() - start) / len(clip.frames)
        j, f, wrong = score(clip.labels, pred)
        print(f"{name:34s} {(j + f) / 2:6.3f} {j:6.3f} {f:6.3f} {seconds:8.3f}  {spans(wrong)}", flush=True)


if __name__ == "__main__":
    main()
