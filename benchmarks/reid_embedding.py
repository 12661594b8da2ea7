"""How well re-id embeddings tell the same object from other regions, on data never used to fit
the projection: the 6 held-out DAVIS-2016 train sequences (the object across frames vs
background regions and the other sequences' objects), the two DAVIS-2017 example clips
(judo: four look-alike people), and the synthetic occlusion clip (the object vs its tinted
look-alike).

Usage:
    python benchmarks/reid_embedding.py --davis ../shared/data/davis2016-train \
        [--examples ../shared/data/examples] [--config NAME] [--projection FILE] [--threads 2]

Prints the pair ROC AUC (a matching pair scores above a non-matching one) of the raw pooled
features and of the shipped 256-d whitened embedding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from memvos.data.synthetic import make_occlusion_clip
from memvos.inference.reid import RegionEmbedder, load_projection, projection_path
from memvos.model.factory import load_model
from memvos.train.reid import Describer, ReidTrainConfig, collect, pair_scores, roc_auc


def report(name: str, x: np.ndarray, groups: np.ndarray, embedder: RegionEmbedder) -> None:
    e = embedder.projection(torch.from_numpy(x).float()).numpy()
    pos, neg = pair_scores(e, groups)
    if not len(pos):  # every object seen once (judo's masks each introduce a new object)
        print(f"{name:42s} regions {len(x):5d}  no matching pairs; whitened cosine of other regions: "
              f"median {np.median(neg):.2f}, 99th percentile {np.quantile(neg, 0.99):.2f}", flush=True)
        return
    raw = roc_auc(*pair_scores(x, groups))
    print(f"{name:42s} regions {len(x):5d}  AUC raw {raw:.3f}  whitened {roc_auc(pos, neg):.3f}  "
          f"(whitened cosine: same {np.median(pos):.2f}, other {np.median(neg):.2f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--examples", type=Path)
    parser.add_argument("--config", help="whose features: a preset or checkpoint (default: the default model)")
    parser.add_argument("--projection", type=Path, help="default: the shipped one for those features")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.config)
    embedder = RegionEmbedder(load_projection(args.projection or projection_path(model.reid_feature_name)))
    from memvos.data.datasets import DavisDataset

    held_out = DavisDataset(args.davis, split="train").sequences[-6:]
    cfg = ReidTrainConfig(davis=str(args.davis), sequences=held_out, frames_per_sequence=12, exclude_last=0)
    report("DAVIS-2016 held-out six", *collect(cfg, model), embedder)
    if args.examples:
        cfg = ReidTrainConfig(davis=str(args.examples), split=None, sequences=[], exclude_last=0,
                              frames_per_sequence=16, background_regions=1)
        report("DAVIS-2017 examples (judo, bike)", *collect(cfg, model), embedder)
    clip = make_occlusion_clip()
    describer = Describer(model, 480)
    rows, groups = [], []
    for t in range(0, len(clip.frames), 3):
        f = describer.features(clip.frames[t])
        visible = clip.labels[t] == 1
        if visible.sum() > 0.8 * (clip.labels[0] == 1).sum():
            rows.append(describer.describe(f, describer.grid(visible[None], f.shape[-2:]))[0])
            groups.append(0)
    twin = make_occlusion_clip(tint=0.0)  # where the look-alike is: the pixels that differ from the clip
    for t in range(0, len(clip.frames), 3):
        f = describer.features(clip.frames[t])
        diff = np.abs(clip.frames[t].astype(int) - twin.frames[t].astype(int)).sum(-1) > 30
        if diff.sum() > 0.5 * (clip.labels[0] == 1).sum():
            rows.append(describer.describe(f, describer.grid(diff[None], f.shape[-2:]))[0])
            groups.append(1 + len(groups))
    x = torch.stack(rows).numpy().astype(np.float64)
    report("occlusion clip: object vs tinted look-alike", x, np.array(groups), embedder)


if __name__ == "__main__":
    main()
