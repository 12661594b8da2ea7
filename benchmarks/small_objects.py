"""Many small objects at 1080p: do they survive? (issue 20, item 6)

Usage:
    python benchmarks/small_objects.py [--data ../shared/data] [--objects 24] [--frames 16]
        [--sizes 480,720,1080] [--threads 2] [--json OUT.json]

The clip is built from COCO: a COCO photograph, enlarged, is the background; ``--objects``
instances cut from other COCO images (their masks) are scaled to areas of 150 to 1500 pixels at
1920x1080, spread over the frame and moving (up to 4 px per frame, bouncing at the edges);
later ones pass in front of earlier ones. The masks of frame 0 are given. The fast model then
runs as `memvos segment` runs it by default (its rule for small objects: ``inference.min_object_area``),
then at each of ``--sizes`` as the processing short side (480: the default without that rule). Reported per size: J&F (DAVIS measures, first and last frame not
scored, mean over objects), how many objects survive (J >= 0.5 on the last frame), the share of
objects found nowhere on the last frame, and frames/s.

The COCO images are also in the static pre-training set, so this measures the effect of
object size (what is lost when 1080p is processed at 480p), not generalisation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from memvos.data.synthetic import Clip, Sprite, render_clip
from memvos.eval.metrics import f_measure, jaccard
from memvos.inference.core import InferenceCore
from memvos.model.loading import load_models

SIZE = (1080, 1920)


def coco_instances(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb crop, bool mask crop) of every COCO instance of at least 40x40 pixels."""
    out = []
    for mask_path in sorted((root / "masks").glob("*.png")):
        labels = np.asarray(Image.open(mask_path))  # palette indices: instance ids
        rgb = np.asarray(Image.open(root / "images" / f"{mask_path.stem}.jpg").convert("RGB"))
        for obj in np.unique(labels):
            if obj in (0, 255):
                continue
            ys, xs = np.nonzero(labels == obj)
            if ys.max() - ys.min() < 40 or xs.max() - xs.min() < 40:
                continue
            box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            out.append((np.ascontiguousarray(rgb[box]), labels[box] == obj))
    return out


def many_object_clip(root: Path, objects: int, frames: int, seed: int = 0) -> Clip:
    """The 1080p clip described above (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    instances = coco_instances(root)
    picks = rng.choice(len(instances), size=objects + 1, replace=False)
    backgrounds = sorted((root / "images").glob("*.jpg"))
    background = cv2.cvtColor(cv2.imread(str(backgrounds[int(rng.integers(len(backgrounds)))])), cv2.COLOR_BGR2RGB)
    background = cv2.resize(background, SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    h, w = SIZE
    cols = int(np.ceil(np.sqrt(objects * w / h)))
    rows = int(np.ceil(objects / cols))
    sprites = []
    for k, index in enumerate(picks[:objects]):
        rgb, mask = instances[index]
        area = float(rng.uniform(150, 1500))
        scale = np.sqrt(area / mask.sum())
        size = (max(round(mask.shape[1] * scale), 4), max(round(mask.shape[0] * scale), 4))
        small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
        small_rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        r, c = divmod(k, cols)
        start = ((c + 0.5 + rng.uniform(-0.25, 0.25)) * w / cols, (r + 0.5 + rng.uniform(-0.25, 0.25)) * h / rows)
        velocity = tuple(float(v) for v in rng.uniform(-4, 4, size=2))
        sprites.append(Sprite(rgb=small_rgb, mask=small_mask, start=start, velocity=velocity, object_id=k + 1,
                              bounds=(20, 20, w - 20, h - 20)))
    return render_clip(background, sprites, frames, size=SIZE)


def run(models, config, clip: Clip, short_side: int | None) -> tuple[np.ndarray, float]:
    """(T, H, W) labels with processing at ``short_side`` (None: as the config says, with its rule
    for small objects), and frames/s after frame 0."""
    inference = config.inference if short_side is None else dataclasses.replace(
        config.inference, max_short_side=short_side, min_object_area=None)
    core = InferenceCore(models, inference)
    out = np.zeros((len(clip.frames), *SIZE), np.uint8)
    began = 0.0
    for t, frame in enumerate(clip.frames):
        if t == 1:
            began = time.perf_counter()
        out[t] = core.labels(core.step(frame, clip.labels[0] if t == 0 else None))
    return out, (len(clip.frames) - 1) / (time.perf_counter() - began)


def score(pred: np.ndarray, truth: np.ndarray) -> dict:
    ids = [int(i) for i in np.unique(truth[0]) if i]
    scored = range(1, len(truth) - 1)
    jf = [np.mean([(jaccard(truth[t] == i, pred[t] == i) + f_measure(truth[t] == i, pred[t] == i)) / 2
                   for t in scored]) for i in ids]
    last = [jaccard(truth[-1] == i, pred[-1] == i) for i in ids if (truth[-1] == i).any()]
    present = [(pred[-1] == i).any() for i in ids if (truth[-1] == i).any()]
    return {"objects": len(ids), "J&F": float(np.mean(jf)), "survive": int(np.sum(np.array(last) >= 0.5)),
            "visible_at_end": len(last), "missing_at_end": int(len(present) - np.sum(present)),
            "median_area_px": float(np.median([(truth[0] == i).sum() for i in ids]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--objects", type=int, default=24)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--sizes", default="480,720,1080")
    parser.add_argument("--config", help="preset (default: what memvos segment runs on 1080p)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip = many_object_clip(args.data / "static" / "coco128-seg", args.objects, args.frames)
    truth = np.stack(clip.labels)
    models, config = load_models(None, args.config, "cpu", frame_size=SIZE)
    rows = []
    for side in [None] + [int(s) for s in args.sizes.split(",") if s.strip()]:
        pred, fps = run(models, config, clip, side)
        row = {"short_side": side or "default", **score(pred, truth), "fps": fps}
        rows.append(row)
        print(f"{side or 'default':>7}  J&F {row['J&F']:.3f}  survive {row['survive']}/{row['visible_at_end']}  "
              f"missing {row['missing_at_end']}  {fps:.2f} frames/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"command": "python benchmarks/small_objects.py", "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
