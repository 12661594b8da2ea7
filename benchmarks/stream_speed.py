"""Frames per second at 480p and peak RAM over long synthetic streams (the memory must stay flat).

Usage:
    python benchmarks/stream_speed.py fps [--config NAME | --checkpoint FILE] [--frames 120] [--height 480]
        [--scales 240] [--memory-frames 10] [--coarse-memory 1] [--precision auto|float32|bfloat16]
    python benchmarks/stream_speed.py ram --frames 1000 [--height 120]   # run again with --frames 10000

The stream is generated on the fly (one frame in memory at a time): a textured shape moving
and rotating over a texture, its mask given on frame 0. ``fps`` is measured after frame 5;
``fps_full`` only over the frames whose memory had reached its cap (the steady state of a
long video: with 20 memory frames and one every 5th frame, from about frame 95 on).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import cv2
import numpy as np
import torch

from memvos.cli import PRECISION_CHOICES
from memvos.data.synthetic import shape_mask, smooth_texture
from memvos.inference.core import InferenceCore
from memvos.model.loading import load_models, parse_scales


def stream(n: int, height: int, seed: int = 0, objects: int = 1):
    """Yield (frame, mask-or-None) for n frames of size height x (16/9 height); with several
    ``objects`` the shape's first mask is cut into that many vertical slices, one id each."""
    rng = np.random.default_rng(seed)
    h, w = height, round(height * 16 / 9 / 2) * 2
    background = smooth_texture((h, w), rng, scale=h / 8)
    side = h // 3
    sprite = smooth_texture((side, side), rng, scale=side / 4)
    mask = shape_mask("ellipse", side).astype(np.float32)
    for t in range(n):
        cx = w / 2 + (w / 3) * np.sin(t / 25)
        cy = h / 2 + (h / 5) * np.cos(t / 40)
        m = cv2.getRotationMatrix2D((side / 2, side / 2), t * 2.0, 1.0)
        m[:, 2] += (cx - side / 2, cy - side / 2)
        alpha = cv2.warpAffine(mask, m, (w, h))[..., None]
        rgb = cv2.warpAffine(sprite, m, (w, h)).astype(np.float32)
        frame = (background * (1 - alpha) + rgb * alpha).astype(np.uint8)
        yield frame, (slice_ids(alpha[..., 0] >= 0.5, objects) if t == 0 else None)


def slice_ids(mask: np.ndarray, objects: int) -> np.ndarray:
    """(H, W) bool -> uint8 labels 1..objects, one per vertical slice of the mask's extent."""
    xs = np.nonzero(mask.any(0))[0]
    edges = np.linspace(xs[0], xs[-1] + 1, objects + 1)
    column_id = np.searchsorted(edges, np.arange(mask.shape[1]), side="right").clip(1, objects)
    return np.where(mask, column_id[None, :], 0).astype(np.uint8)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("fps", "ram"))
    parser.add_argument("--config")
    parser.add_argument("--checkpoint", action="append")
    parser.add_argument("--frames", type=int, default=120, help="long enough for the memory to reach its cap")
    parser.add_argument("--height", type=int, default=None, help="default: 480 for fps, 120 for ram")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the labels' copy to the CPU ends each frame)")
    parser.add_argument("--objects", type=int, default=1, help="objects tracked (the shape cut into slices)")
    parser.add_argument("--scales", help="processing short side(s), e.g. 240 (default: the config's)")
    parser.add_argument("--memory-frames", type=int, help="memory cap (default: the config's)")
    parser.add_argument("--coarse-memory", type=int, help="memory.coarse: 1 keeps every memory frame at full "
                        "resolution (default: the config's)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, help="default: the config's (auto)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height = args.height or (480 if args.what == "fps" else 120)
    models, config = load_models(args.checkpoint, args.config, args.device, precision=args.precision,
                                 frame_size=(height, height * 16 // 9))
    inference = config.inference
    if args.scales:
        inference = dataclasses.replace(inference, scales=parse_scales(args.scales))
    memory_changes = {k: v for k, v in (("max_frames", args.memory_frames), ("coarse", args.coarse_memory)) if v}
    if memory_changes:
        inference = dataclasses.replace(inference, memory=dataclasses.replace(inference.memory, **memory_changes))
    core = InferenceCore(models, inference)
    times, rss, full = [], [], []
    for frame, mask in stream(args.frames, height, objects=args.objects):
        start = time.perf_counter()
        core.labels(core.step(frame, mask))
        times.append(time.perf_counter() - start)
        rss.append(rss_mb())
        full.append(len(core.branches[0][0].memory) >= inference.memory.max_frames)
    steady = times[min(5, len(times) - 1):]
    at_cap = [t for t, f in zip(times[1:], full) if f]  # frame t read a memory that was full
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT {args.what} config={config.name} frames={args.frames} size={frame.shape[1]}x{frame.shape[0]} "
          f"fps={len(steady) / sum(steady):.2f} s/frame={np.mean(steady):.3f} "
          f"fps_full={len(at_cap) / sum(at_cap) if at_cap else float('nan'):.2f} frames_full={len(at_cap)} "
          f"objects={args.objects} device={inference.device} scales={inference.scales} memory_frames={inference.memory.max_frames} memory_coarse={inference.memory.coarse} precision={inference.precision} "
          f"peak_rss_mb={peak:.0f} "
          f"rss_at_10%={rss[len(rss) // 10]:.0f} rss_at_end={rss[-1]:.0f} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
