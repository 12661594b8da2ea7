"""Where one 480p frame's time goes: the encoder, memorising, the memory read and the decoder,
timed one by one on a synthetic frame with the memory filled with T copies of its entry.

Usage:
    python benchmarks/frame_profile.py [--config NAME | --checkpoint FILE] [--memory-frames 20] [--threads 2]

Prints the median seconds of each piece over --repeats runs (after one warm-up run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from memvos.model.loading import load_models


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config")
    parser.add_argument("--checkpoint")
    parser.add_argument("--memory-frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    h, w = 480, 854
    models, config = load_models([args.checkpoint] if args.checkpoint else None, args.config, "cpu", frame_size=(h, w))
    model = models[0]
    rgb = torch.rand(1, 3, h, w)
    probs = torch.zeros(2, h, w)
    probs[1, 100:300, 300:500] = 1
    probs[0] = 1 - probs[1]
    with torch.inference_mode():
        query = model.encode_query(rgb)
        entry = model.memorize(rgb, query, probs, (1,))
        memory = [entry] * args.memory_frames
        pieces = {
            "encode": lambda: model.encode_query(rgb),
            "memorize": lambda: model.memorize(rgb, query, probs, (1,)),
            "segment (read + decoder)": lambda: model.segment(query, memory, (1,)),
        }
        if hasattr(model, "decoder"):  # the trained networks: the read and the decoder on their own
            keys = torch.stack([m.key for m in memory], 2)
            values = torch.stack([m.value for m in memory], 2)[None]  # (1, K, Cr, T, h, w)
            k, cr = values.shape[1:3]
            read = model.read(keys, values.flatten(1, 2), query.key).unflatten(1, (k, cr))
            features = torch.cat([query.fk, query.f8], 1)
            pieces["read"] = lambda: model.read(keys, values.flatten(1, 2), query.key)
            pieces["decoder"] = lambda: model.decoder(read, features, query.f4, query.size, None)
        timed = {name: median_seconds(fn, args.repeats) for name, fn in pieces.items()}
    print(f"RESULT config={config.name} size={w}x{h} memory_frames={args.memory_frames} "
          f"key_grid={tuple(query.key.shape[-2:])} precision={config.inference.precision} "
          + " ".join(f"{name.split()[0]}={s:.3f}s" for name, s in timed.items()))


if __name__ == "__main__":
    main()
