"""J&F per sequence on the validation split (memvos.train.splits): the ten hard DAVIS-2016 train
sequences + schoolgirls (``hard``) and the old held-out six (``six``); ``--split outside`` scores the
15 other clips instead (a check no choice was tuned on, for weights that never saw a video).

Usage:
    python benchmarks/validation_split.py --data ../shared/data [--config NAME | --checkpoint FILE ...]
        [--split validation|hard|six|outside] [--read stm|kmn] [--flip] [--threads 2] [--json OUT.json]

Each sequence is segmented from its first frame's mask with `memvos segment`'s code path and
scored with `memvos eval`'s. Without --config/--checkpoint the model is the one `memvos segment`
picks for the sequence's frame size. Split means are over sequences (each sequence's J&F is the
mean over its objects), so the 7-person clip counts once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from memvos.data.datasets import DavisDataset
from memvos.eval.evaluate import evaluate_folders
from memvos.model.loading import load_models, override_read, parse_scales
from memvos.segment import segment_video
from memvos.train.splits import HARD, HELD_OUT_SIX, OUTSIDE, SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--config", help="preset or YAML (default: what memvos segment picks per frame size)")
    parser.add_argument("--checkpoint", action="append")
    parser.add_argument("--split", default="validation", choices=sorted(SPLITS))
    parser.add_argument("--sequences", nargs="+", help="only these names of the split")
    parser.add_argument("--read", choices=("stm", "kmn"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scales", help="processing short sides, as memvos segment --scales (e.g. 480: small "
                                         "frames upscaled); the model is then picked for that size")
    parser.add_argument("--flip", action="store_true", help="test-time flip, as memvos segment --flip")
    parser.add_argument("--json", type=Path, help="write the per-sequence scores here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = [s for s in SPLITS[args.split] if not args.sequences or s.name in args.sequences]
    models_by_size: dict = {}
    rows = []
    out = Path(tempfile.mkdtemp(prefix="memvos-val-"))
    for item in split:
        dataset = DavisDataset(args.data / item.dataset)
        seq = dataset[item.name]
        size = seq.frames.size
        if size not in models_by_size:
            scales = parse_scales(args.scales)
            models, config = load_models(args.checkpoint, args.config, "cpu",
                                         frame_size=(min(scales),) * 2 if scales else size, enlarge=not scales)
            override_read(models, mode=args.read)
            if scales:
                config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, scales=scales))
            if args.flip:
                config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, flip=True))
            models_by_size[size] = (models, config)
        models, config = models_by_size[size]
        first = seq.frames.names[0]
        stats = segment_video(seq.frames.path, {0: seq.annotations[first]}, out / item.dataset / item.name,
                              models=models, config=config, progress=False)
        scores = evaluate_folders(dataset.mask_dir, out / item.dataset, sequences=[item.name]).per_sequence()[item.name]
        rows.append({"dataset": item.dataset, "sequence": item.name, "kind": item.kind, "model": config.name,
                     "objects": len(scores["objects"]), "J": scores["J-Mean"], "F": scores["F-Mean"],
                     "J&F": scores["J&F-Mean"], "fps": stats["fps"]})
        r = rows[-1]
        print(f"{item.name:18s} objects {r['objects']}  J {r['J']:.3f}  F {r['F']:.3f}  J&F {r['J&F']:.3f}  "
              f"{r['fps']:.2f} frames/s  ({r['model']})", flush=True)
    summary = {}
    for name, members in (("hard", HARD), ("six", HELD_OUT_SIX), ("outside", OUTSIDE)):
        picked = [r["J&F"] for r in rows if any(r["sequence"] == m.name and r["dataset"] == m.dataset for m in members)]
        if picked:
            summary[name] = float(np.mean(picked))
    label = " ".join(args.checkpoint or []) or args.config or "default"
    print("RESULT " + f"model={label} read={args.read or 'config'} scales={args.scales or 'config'} flip={args.flip} "
          + " ".join(f"{k}={v:.4f}" for k, v in summary.items()) + f" sequences={len(rows)}")
    if args.json:
        args.json.write_text(json.dumps({"model": label, "command": " ".join(sys.argv), "summary": summary,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
