"""The interaction network on the held-out static images (every 10th image of the training
folders by name hash, never trained on): IoU after 1, 2 and 3 robot clicks, and what a negative
click does.

Usage:
    python benchmarks/click_to_mask.py [--weights memvos/weights/interaction-lite0.safetensors]
        [--config configs/train/interaction.yaml] [--data ../shared/data] [--from-images [--mirror]]
        [--session [--first-touch WEIGHTS]] [--json OUT.json]

Clicks: the first at the object's deepest point (as a person clicks the middle of an object),
then the click robot's (the deepest point of the larger error). Every object of at least 1% of
its image counts; per folder: ECSSD (salient objects, one per image), COCO (several instances,
look-alikes), people. Negative click: after the first click, wherever the prediction spills
onto background, a negative click at the spill's deepest point; reported: how much of that
spilled region is left, and how many pixels changed farther than a quarter of the image's short
side from the click (as a share of the object's area: should be ~0), for the network's output
and for what the interactive session keeps of it (a negative-only interaction removes only the
dropped parts that touch its marks: ``confine_removal``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from memvos.inference.interactive import InteractiveConfig, confine_removal
from memvos.model.interaction import load_click_to_mask, shipped_first_touch_weights, shipped_interaction_weights
from memvos.train.interaction import (
    InteractionSamples,
    add_click,
    build_cache,
    click_ious,
    deepest_point,
    held_out_objects,
    load_interaction_config,
)


def negative_click_effect(predict, truth: np.ndarray) -> tuple[float, float, float, float] | None:
    """(share of the clicked spill left, far-away change / object area) of the network's output,
    then the same after the session's rule for a negative-only interaction (``confine_removal``),
    or None without a spill."""
    pos = np.zeros_like(truth)
    pos, neg = add_click((pos, np.zeros_like(truth)), (*deepest_point(truth), True))
    first = predict(pos, neg, None) > 0.5
    spill = first & ~truth
    if spill.sum() < 50:
        return None
    count, components = cv2.connectedComponents(spill.astype(np.uint8))
    largest = 1 + int(np.argmax([np.sum(components == i) for i in range(1, count)]))
    region = components == largest
    r, c = deepest_point(region)
    pos, neg = add_click((pos, neg), (r, c, False))
    proposed = predict(pos, neg, first.astype(np.float32))
    new_negative = add_click((np.zeros_like(truth), np.zeros_like(truth)), (r, c, False))[1]
    confined = confine_removal(first.astype(np.float32), proposed, new_negative) > 0.5
    ys, xs = np.mgrid[: truth.shape[0], : truth.shape[1]]
    far = np.hypot(ys - r, xs - c) > 0.25 * min(truth.shape)
    out = []
    for second in (proposed > 0.5, confined):
        out += [float((second & region).sum() / region.sum()), float(((first != second) & far).sum() / truth.sum())]
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--config", default="configs/train/interaction.yaml")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--from-images", action="store_true",
                        help="features from the images as a session computes them (default: the training cache's)")
    parser.add_argument("--mirror", action="store_true", help="with --from-images: also read the mirror image, "
                                                                "as sessions do (InteractiveConfig.mirror_clicks)")
    parser.add_argument("--session", action="store_true",
                        help="as a session runs it: from the images, mirrored, the first click by the first-touch "
                             "network (trimmed by keep_near_marks), later clicks by --weights")
    parser.add_argument("--first-touch", type=Path, default=None,
                        help="with --session: first-touch weights (default: the shipped ones)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.session:
        args.from_images = args.mirror = True
    torch.set_num_threads(args.threads)
    cfg = load_interaction_config(args.config, args.data)
    model = load_click_to_mask(args.weights or shipped_interaction_weights())
    net = model.net
    cache = build_cache(cfg)
    held = InteractionSamples(cfg, cache, held_out=True)
    rows: dict[str, list[list[float]]] = {}
    negatives: list[tuple[float, ...]] = []
    clicker = model if args.from_images or args.mirror else None
    first_touch = load_click_to_mask(args.first_touch or shipped_first_touch_weights()) if args.session else None
    keep_near = InteractiveConfig().keep_near_marks if args.session else None
    for folder, truth, predict in held_out_objects(net, cfg, cache, clicker=clicker, mirror=args.mirror,
                                                   first_touch=first_touch, keep_near=keep_near):
        rows.setdefault(folder, []).append(click_ious(predict, truth, 3))
        effect = negative_click_effect(predict, truth)
        if effect is not None:
            negatives.append(effect)
    every = [r for v in rows.values() for r in v]
    result = {
        "images": len(held.pairs), "objects": len(every),
        "iou_after_clicks": np.mean(every, axis=0).round(3).tolist(),
        "share_iou_at_least_0.8_after_1": round(float(np.mean([r[0] >= 0.8 for r in every])), 3),
        "per_folder": {k: {"objects": len(v), "iou_after_clicks": np.mean(v, axis=0).round(3).tolist(),
                           "median_after_1": round(float(np.median([r[0] for r in v])), 3)}
                       for k, v in sorted(rows.items())},
        "negative_click": {"cases": len(negatives), **{
            f"{key}{suffix}": round(float(np.mean([n[i + offset] for n in negatives])), 4) if negatives else math.nan
            for suffix, offset in (("_network", 0), ("_session", 2))
            for i, key in enumerate(("spill_left", "far_change_per_object_area"))}},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
