"""J&F and speed of a memvos model on DAVIS sequences (default: the 6 held-out DAVIS-2016 train ones).

Usage:
    python benchmarks/davis_heldout.py --davis ../shared/data/davis2016-train \
        [--config training-free-lite0 | --checkpoint FILE ...] [--read stm|kmn] [--argmax-stride 2]
        [--sequences a b] [--out DIR]
        [--reid | --offline] [--flip] [--scales 480,600] [--precision auto|float32|bfloat16] [--memory-frames N]

Segments each sequence from its first-frame mask with `memvos segment`'s code path, then
scores the result with `memvos eval`'s. The last 6 sequences of ImageSets/train.txt are never
used for tuning anything; report numbers on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch

from memvos.cli import PRECISION_CHOICES
from memvos.data.datasets import DavisDataset
from memvos.eval.evaluate import GLOBAL_KEYS, evaluate_folders
from memvos.eval.report import format_tables
from memvos.inference.reid import ReidConfig
from memvos.model.loading import load_models, override_read, parse_scales
from memvos.segment import segment_video

HELD_OUT = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--config", help="preset or YAML (default: the best shipped model)")
    parser.add_argument("--checkpoint", action="append")
    parser.add_argument("--read", choices=("stm", "kmn"))
    parser.add_argument("--argmax-stride", type=int, help="KMN: find each memory cell's best match on a coarser query grid")
    parser.add_argument("--sequences", nargs="+", help=f"default: the last {HELD_OUT} of ImageSets/train.txt")
    parser.add_argument("--out", type=Path, help="keep the predicted masks here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reid", action="store_true", help="online with re-identification")
    parser.add_argument("--offline", action="store_true", help="re-identification + bidirectional propagation")
    parser.add_argument("--flip", action="store_true", help="test-time flip")
    parser.add_argument("--scales", help="test-time scales, e.g. 480,600")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, help="default: the config's (auto)")
    parser.add_argument("--memory-frames", type=int, help="memory cap (default: the config's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = DavisDataset(args.davis, split="train")
    sequences = args.sequences or dataset.sequences[-HELD_OUT:]
    frame_size = dataset[sequences[0]].frames.size  # the default model depends on it (480p: the fast one)
    models, config = load_models(args.checkpoint, args.config, "cpu", precision=args.precision, frame_size=frame_size)
    override_read(models, mode=args.read, argmax_stride=args.argmax_stride)
    changes = {}
    if args.reid or args.offline:
        changes["reid"] = config.inference.reid or ReidConfig()
    if args.flip:
        changes["flip"] = True
    if args.scales:
        changes["scales"] = parse_scales(args.scales)
    if args.memory_frames:
        changes["memory"] = dataclasses.replace(config.inference.memory, max_frames=args.memory_frames)
    config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, **changes))
    out = args.out or Path(tempfile.mkdtemp(prefix="memvos-heldout-"))
    frames = seconds = forward_seconds = 0.0
    for name in sequences:
        seq = dataset[name]
        first = seq.frames.names[0]
        if args.offline:  # also keeps the forward pass alone: online re-identification
            stats = offline_sequence(seq, first, models, config, out / name, out.with_name(out.name + "-forward") / name)
            forward_seconds += stats["forward_seconds"]
        else:
            stats = segment_video(seq.frames.path, {0: seq.annotations[first]}, out / name, models=models,
                                  config=config, progress=False)
        frames += stats["frames"]
        seconds += stats["seconds"]
        print(f"{name}: {stats['frames']} frames, {stats['fps']:.2f} frames/s", flush=True)
    if args.offline:
        forward = evaluate_folders(dataset.mask_dir, out.with_name(out.name + "-forward"), sequences=sequences)
        g = forward.global_statistics()
        print("RESULT-FORWARD (online + re-id) " + " ".join(f"{k}={g[k]:.4f}" for k in GLOBAL_KEYS)
              + f" fps={frames / forward_seconds:.2f}")
    result = evaluate_folders(dataset.mask_dir, out, sequences=sequences)
    print(format_tables(result))
    g = result.global_statistics()
    read = models[0].read.config
    mode = "offline" if args.offline else "reid" if args.reid else "online"
    print(f"RESULT config={config.name} mode={mode} flip={config.inference.flip} scales={config.inference.scales} "
          f"precision={config.inference.precision} memory_frames={config.inference.memory.max_frames} "
          f"read={read.mode} sigma={read.sigma} top_k={read.top_k} argmax_stride={read.argmax_stride} "
          + " ".join(f"{k}={g[k]:.4f}" for k in GLOBAL_KEYS)
          + f" fps={frames / seconds:.2f} threads={torch.get_num_threads()} masks={out}")


def offline_sequence(seq, first: str, models, config, out: Path, forward_out: Path) -> dict[str, float]:
    """The offline mode on one sequence; writes its masks and the forward pass's."""
    import time

    from memvos.data.masks import read_mask
    from memvos.data.writers import write_palette_png
    from memvos.inference.offline import segment_offline

    start = time.perf_counter()
    labels, report = segment_offline(seq.frames, {0: read_mask(seq.annotations[first])}, models, config.inference)
    seconds = time.perf_counter() - start
    for folder, maps in ((out, labels), (forward_out, report.forward_labels)):
        folder.mkdir(parents=True, exist_ok=True)
        for name, m in zip(seq.frames.names, maps):
            write_palette_png(folder / f"{name}.png", m)
    print(f"  starting points {report.starts}, backward frames {report.backward_frames}, events {report.events}")
    return {"frames": len(labels), "seconds": seconds, "fps": len(labels) / seconds,
            "forward_seconds": report.forward_seconds}


if __name__ == "__main__":
    main()
