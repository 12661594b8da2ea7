"""Per-frame J of interactive sessions propagating from frame 0, for several weights: on the test
suite's synthetic sprite clip (from one stroke and from a whole mask) and, with --davis, on the
first 16 frames of a real sequence at two sizes. Prints numbers; asserts nothing.

    python benchmarks/interactive_propagation_probe.py [--davis ../shared/data/davis2016-train]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from memvos.data.datasets import DavisDataset
from memvos.data.synthetic import make_synthetic_clip
from memvos.eval.metrics import jaccard
from memvos.inference.interactive import InteractiveSession, load_interactive_model
from memvos.model.factory import DEFAULT_INTERACTIVE_WEIGHTS, DEFAULT_WEIGHTS

R1_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "frozen-key-lite0-interactive-r1.safetensors"
WEIGHTS = (DEFAULT_WEIGHTS, DEFAULT_INTERACTIVE_WEIGHTS, R1_WEIGHTS)


def stroke_inside(mask: np.ndarray) -> np.ndarray:
    """A 3-pixel-thick horizontal stroke across the object's middle row."""
    ys, _ = np.nonzero(mask)
    cy = int(np.median(ys))
    row = np.nonzero(mask[cy])[0]
    stroke = np.zeros_like(mask)
    stroke[cy - 1:cy + 2, row.min() + 2:row.max() - 1] = True
    return stroke


def per_frame_j(weights: str, frames: np.ndarray, labels: np.ndarray, **given) -> np.ndarray:
    """Annotate object 1 on frame 0 (``positive=`` or ``mask=``), propagate, J per frame."""
    model, config = load_interactive_model(weights)
    session = InteractiveSession(frames, model=model, memvos_config=config)
    session.interact(0, 1, **given)
    session.propagate()
    masks = session.masks()
    return np.array([jaccard(m == 1, g == 1) for m, g in zip(masks, labels)])


def davis_clip(root: Path, sequence: str, size: tuple[int, int], n: int = 16):
    """The first ``n`` frames and object-1 masks of a DAVIS sequence, resized to ``size`` (w, h)."""
    video = DavisDataset(root)[sequence]
    names = video.frames.names[:n]
    rgb = np.stack([cv2.resize(video.frames[i], size, interpolation=cv2.INTER_AREA) for i in range(len(names))])
    labels = np.stack([cv2.resize((video.read_annotation(name) == 1).astype(np.uint8), size,
                                  interpolation=cv2.INTER_NEAREST) for name in names])
    return rgb, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--davis", type=Path, help="DAVIS-2016 root for the real-video rows")
    parser.add_argument("--sequence", default="tennis")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = [str(w) for w in WEIGHTS if w.is_file()]
    made = make_synthetic_clip(n_frames=8, size=(192, 256), n_objects=2, seed=1)
    frames, labels = np.stack(made.frames), np.stack(made.labels)
    for w in weights:
        for name, given in (("stroke", {"positive": stroke_inside(labels[0] == 1)}), ("mask", {"mask": labels[0] == 1})):
            j = per_frame_j(w, frames, labels, **given)
            print(f"synthetic {name:6s} {Path(w).stem:40s} mean {j.mean():.3f} per frame {np.round(j, 2)}")
    if args.davis:
        for size in ((256, 192), (854, 480)):
            rgb, gt = davis_clip(args.davis, args.sequence, size)
            for w in weights:
                j = per_frame_j(w, rgb, gt, mask=gt[0] == 1)
                print(f"{args.sequence} {size[0]}x{size[1]} mask {Path(w).stem:40s} mean {j.mean():.3f} "
                      f"frames 0,3,..,15 {np.round(j[::3], 2)}")


if __name__ == "__main__":
    main()
