"""End-to-end frames/s of dataset mode against the engine's in-loop frames/s on the same frames,
and peak RSS, in one run.

Usage:
    python benchmarks/throughput.py [--root ../shared/data/davis2016-train] [--sequences bear boat elephant]
        [--all] [--threads 2] [--config NAME] [--rss-single]

1. ``memvos segment ROOT --out TMP --sequences ...`` runs as a child process (dataset mode: the
   model loaded once, frames read ahead, masks written behind). Its own summary line gives the
   end-to-end rate from the start of the command (model loading, reading, writing included);
   the child's wall time (Python and torch start-up too) gives a second, stricter rate. Its
   peak RSS comes from ``os.wait4``.
2. In this process, the same model runs over the same frames, decoded beforehand into memory
   one sequence at a time; only ``core.step`` + ``core.labels`` are timed: the in-loop rate.
3. ``--rss-single``: the longest sequence alone as a single-video `memvos segment` child, for its
   peak RSS (the dataset run should need no more than it + 200 MB).
4. ``--per-clip``: the way without dataset mode, one `memvos segment` process per sequence; its
   rate is frames over the processes' summed wall time.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from memvos.data.datasets import DavisDataset
from memvos.inference.core import InferenceCore
from memvos.model.loading import load_models

DEFAULT_SEQUENCES = ("bear", "boat", "elephant")


def run_child(argv: list[str], threads: int) -> tuple[float, float, str]:
    """Run ``python -m memvos ARGV``; returns (wall seconds, peak RSS MB, stdout)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "memvos", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"memvos {' '.join(argv)} exited with {child.returncode}:\n{out}")
    return wall, usage.ru_maxrss / 1024, out


def in_loop_fps(dataset: DavisDataset, names: list[str], config: str | None, threads: int) -> tuple[float, int]:
    """Frames/s of the engine's loop alone over ``names`` (frames decoded beforehand)."""
    torch.set_num_threads(threads)
    first = dataset[names[0]]
    models, cfg = load_models(None, config, "cpu", frame_size=first.frames.size)
    seconds, count = 0.0, 0
    for name in names:
        seq = dataset[name]
        frames = list(seq.frames)
        mask = seq.read_annotation(seq.frames.names[0])
        core = InferenceCore(models, cfg.inference)
        start = time.perf_counter()
        for t, frame in enumerate(frames):
            core.labels(core.step(frame, mask if t == 0 else None))
        seconds += time.perf_counter() - start
        count += len(frames)
        del frames
    return count / seconds, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("../shared/data/davis2016-train"))
    parser.add_argument("--sequences", nargs="+", default=list(DEFAULT_SEQUENCES))
    parser.add_argument("--all", action="store_true", help="every sequence of the root (overrides --sequences)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", help="preset (default: what memvos segment picks)")
    parser.add_argument("--rss-single", action="store_true", help="also the longest sequence alone, for its peak RSS")
    parser.add_argument("--per-clip", action="store_true", help="also one single-video process per sequence")
    args = parser.parse_args()
    dataset = DavisDataset(args.root)
    names = list(dataset.sequences) if args.all else args.sequences
    frames = {name: len(dataset[name].frames) for name in names}
    extra = ["--config", args.config] if args.config else []
    with tempfile.TemporaryDirectory() as tmp:
        wall, rss, out = run_child(["segment", str(args.root), "--out", f"{tmp}/ds", "--threads", str(args.threads),
                                    "--sequences", *names, *extra], args.threads)
        match = re.search(r"\(([0-9]+) frames\) in ([0-9.]+) s, ([0-9.]+) frames/s", out)
        if match is None:
            raise SystemExit(f"no summary line in:\n{out}")
        total, e2e = int(match.group(1)), float(match.group(3))
        loop, count = in_loop_fps(dataset, names, args.config, args.threads)
        assert count == total == sum(frames.values())
        print(f"RESULT throughput sequences={len(names)} frames={total} threads={args.threads} "
              f"dataset_fps={e2e:.2f} process_fps={total / wall:.2f} loop_fps={loop:.2f} "
              f"ratio={e2e / loop:.3f} process_ratio={total / wall / loop:.3f} peak_rss_mb={rss:.0f}")
        if args.rss_single:
            longest = max(names, key=lambda n: (frames[n], n))
            seq = dataset[longest]
            mask = seq.annotations[seq.frames.names[0]]
            _, single_rss, _ = run_child(["segment", str(seq.frames.path), "--mask", str(mask), "--out",
                                          f"{tmp}/single", "--threads", str(args.threads), *extra], args.threads)
            print(f"RESULT single sequence={longest} frames={frames[longest]} peak_rss_mb={single_rss:.0f} "
                  f"dataset_minus_single_mb={rss - single_rss:.0f}")
        if args.per_clip:
            walls = []
            for name in names:
                seq = dataset[name]
                mask = seq.annotations[seq.frames.names[0]]
                walls.append(run_child(["segment", str(seq.frames.path), "--mask", str(mask), "--out",
                                        f"{tmp}/clip-{name}", "--threads", str(args.threads), *extra], args.threads)[0])
            print(f"RESULT per_clip sequences={len(names)} frames={total} process_fps={total / sum(walls):.2f} "
                  f"ratio_to_loop={total / sum(walls) / loop:.3f}")


if __name__ == "__main__":
    main()
