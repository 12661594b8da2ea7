"""Time from "propagate" to a finished clip through the web app's HTTP API.

Usage:
    python benchmarks/app_propagate_time.py [--frames 100] [--height 480] [--threads 2] [--checkpoint FILE]

A synthetic clip (one textured shape moving over a texture, 854x480 at the default height) is
written as a frame folder; `memvos app` serves it in a separate process with the default model
and --threads; the client opens it, uploads the first frame's true mask as object 1, then times
POST /propagate until /progress reports the propagation finished (polling every 0.2 s, which also
keeps the session alive). It prints the time, frames/s and the mean J of the result against the
clip's true masks.
"""

from __future__ import annotations

import argparse
import io
import math
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from memvos.data.synthetic import make_synthetic_clip
from memvos.data.writers import write_palette_png


def start_server(root: Path, threads: int, checkpoint: str | None) -> tuple[subprocess.Popen, str]:
    """`memvos app` on a free port; returns the process and its URL (read from its first line)."""
    command = [sys.executable, "-m", "memvos", "app", "--root", str(root), "--port", "0", "--threads", str(threads)]
    if checkpoint:
        command += ["--checkpoint", checkpoint]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline()
    match = re.search(r"http://\S+/", line)
    if not match:
        process.kill()
        raise SystemExit(f"memvos app did not start: {line.strip()} {process.stdout.read()[-2000:]}")
    return process, match.group(0)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=480, help="frame height; width = 16:9 (854 at 480)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server (default 2)")
    parser.add_argument("--checkpoint", help="model weights (default: the shipped interactive model)")
    args = parser.parse_args()

    width = math.ceil(args.height * 16 / 9)  # 854 at 480p, as DAVIS
    with tempfile.TemporaryDirectory(prefix="memvos-app-bench-") as tmp:
        root = Path(tmp)
        made = time.perf_counter()
        clip = make_synthetic_clip(n_frames=args.frames, size=(args.height, width), n_objects=1, seed=0)
        clip.save(root / "clip")
        write_palette_png(root / "first.png", clip.labels[0])
        print(f"clip: {args.frames} frames {width}x{args.height} ({time.perf_counter() - made:.1f} s to make)")

        process, url = start_server(root, args.threads, args.checkpoint)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the server below
        try:
            with httpx.Client(base_url=url, timeout=600) as http:
                run(http, root, clip, args)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def run(http: httpx.Client, root: Path, clip, args) -> None:
    """Open, mark frame 0, time the propagation, score it."""
    started = time.perf_counter()
    sid = _ok(http.post("/api/sessions", json={"path": str(root / "clip")})).json()["id"]
    opened = time.perf_counter()
    mask = (root / "first.png").read_bytes()
    _ok(http.post(f"/api/sessions/{sid}/mask", data={"frame": "0", "object_id": "1"},
                  files={"file": ("first.png", mask, "image/png")}))
    marked = time.perf_counter()
    print(f"open {opened - started:.2f} s (model load included), first-frame mask {marked - opened:.2f} s")

    t0 = time.perf_counter()
    _ok(http.post(f"/api/sessions/{sid}/propagate"))
    last = -1
    while True:
        progress = _ok(http.get(f"/api/sessions/{sid}/progress")).json()["progress"]
        if progress["state"] != "running":
            break
        if progress["done"] // 10 != last // 10:
            last = progress["done"]
            print(f"  {progress['done']}/{progress['total']} frames, {time.perf_counter() - t0:.1f} s", flush=True)
        time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    if progress["state"] != "finished":
        raise SystemExit(f"propagation ended as {progress['state']}: {progress.get('error') or progress.get('reason')}")

    masks = [np.asarray(Image.open(io.BytesIO(_ok(http.get(f"/api/sessions/{sid}/masks/{t}.png")).content)))
             for t in range(args.frames)]
    j = np.mean([jaccard(m == 1, g == 1) for m, g in zip(masks[1:], clip.labels[1:])]) if args.frames > 1 else 1.0
    print(f"propagate -> finished: {elapsed:.1f} s for {progress['done']} frames "
          f"({progress['done'] / elapsed:.2f} frames/s; server-side {progress['seconds']:.1f} s); "
          f"mean J {j:.3f}; {args.threads} threads")


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise SystemExit(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response


if __name__ == "__main__":
    main()
