"""The first mask of the DAVIS interactive protocol, before any propagation: the robot's first
scribble (on the frame where the object is largest, as `memvos interactive-eval` draws it) through
an interaction network, J against the true mask of that frame, at 480p.

Usage:
    python benchmarks/first_scribble_mask.py --davis ../shared/data/davis2016-train \
        --sequences flamingo hockey ... [--weights A.safetensors [B.safetensors ...]] [--keep-near 0.15]

Each --weights is one column (default: the first-touch and the correction networks memvos ships);
``--keep-near`` trims each mask as a session does on a first touch (``keep_near_marks``). Needs the
``davisinteractive`` package (see docs/interactive.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from memvos.data.datasets import DavisDataset
from memvos.eval.interactive import (
    annotated_frames,
    count_objects,
    load_davisinteractive,
    load_sequence,
    make_robot,
    robot_first_scribble,
    scribble_maps,
)
from memvos.inference.interactive import keep_near_marks
from memvos.model.interaction import load_click_to_mask, shipped_first_touch_weights, shipped_interaction_weights

SHORT_SIDE = 480


def _resized(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST) > 0


def first_mask_jaccard(clicker, frame: np.ndarray, truth: np.ndarray, maps: dict, keep_near: float | None) -> float:
    """Mean J over the objects of one frame: (H, W, 3) RGB, (H, W) labels, {id: (positive, negative)}."""
    h, w = truth.shape
    factor = SHORT_SIDE / min(h, w)
    size = (round(h * factor), round(w * factor))
    rgb = cv2.resize(frame, size[::-1], interpolation=cv2.INTER_AREA)
    features = clicker.features(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, mirror=True)
    scores = []
    for obj, (positive, negative) in maps.items():
        positive, negative = _resized(positive, size), _resized(negative, size)
        prob = clicker.predict(features, positive, negative, None).numpy()
        if keep_near is not None:
            prob = keep_near_marks(prob, positive, keep_near)
        mask, true = prob > 0.5, _resized(truth == obj, size)
        scores.append(float((mask & true).sum() / max((mask | true).sum(), 1)))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--sequences", nargs="+", required=True)
    parser.add_argument("--weights", type=Path, nargs="+")
    parser.add_argument("--keep-near", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = args.weights or [shipped_first_touch_weights(), shipped_interaction_weights()]
    clickers = [load_click_to_mask(w) for w in weights]
    load_davisinteractive()
    robot = make_robot()
    dataset = DavisDataset(args.davis)
    table = []
    for name in args.sequences:
        frames, gt = load_sequence(dataset, name)
        nb_objects = count_objects(gt)
        scribble = robot_first_scribble(name, gt, nb_objects, robot)
        frame = annotated_frames(scribble)[0]
        maps = scribble_maps(scribble, frame, gt.shape[1:], range(1, nb_objects + 1))
        row = [first_mask_jaccard(c, frames[frame], gt[frame], maps, args.keep_near) for c in clickers]
        table.append(row)
        print(f"{name:18s} frame {frame:3d}  " + "  ".join(f"{j:.3f}" for j in row), flush=True)
    for path, mean in zip(weights, np.mean(table, axis=0)):
        print(f"mean J {mean:.3f}  {path}")


if __name__ == "__main__":
    main()
