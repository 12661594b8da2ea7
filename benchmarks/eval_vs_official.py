"""Compare `memvos eval` with the official DAVIS-2017 evaluation code: numbers and speed.

Usage:
    python benchmarks/eval_vs_official.py --davis ../shared/data/davis2016-train \
        --official /path/to/davis2017-evaluation [--sequences a b c]

``--official`` is a checkout of github.com/davisvideochallenge/davis2017-evaluation (not
shipped with memvos). Prediction sets are made from the ground truth in a temporary folder:
the ground truth itself, the first-frame mask repeated, and a perturbed copy (shifted,
dilated or eroded, with false-positive blobs and dropped frames). Prints every global
statistic of both evaluators, their largest difference, and the time of each.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from memvos.data.masks import read_mask
from memvos.data.writers import write_palette_png
from memvos.eval.evaluate import GLOBAL_KEYS, evaluate_folders


def perturb(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong prediction: shifted, grown or shrunk, with a spurious blob, sometimes empty."""
    if rng.random() < 0.05:
        return np.zeros_like(labels)
    out = np.zeros_like(labels)
    dy, dx = rng.integers(-6, 7, size=2)
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    for obj in np.unique(labels):
        if obj in (0, 255):
            continue
        mask = cv2.warpAffine((labels == obj).astype(np.uint8), m, labels.shape[::-1], flags=cv2.INTER_NEAREST)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(rng.integers(1, 6)) + 1,) * 2)
        mask = cv2.dilate(mask, k) if rng.random() < 0.5 else cv2.erode(mask, k)
        if rng.random() < 0.3:
            cy, cx = rng.integers(0, labels.shape[0]), rng.integers(0, labels.shape[1])
            cv2.circle(mask, (int(cx), int(cy)), int(rng.integers(5, 30)), 1, -1)
        out[mask > 0] = obj
    return out


def make_predictions(gt_dir: Path, sequences: list[str], out: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    sets = {name: out / name for name in ("gt", "first", "perturbed")}
    for seq in sequences:
        files = sorted((gt_dir / seq).glob("*.png"))
        first = read_mask(files[0])
        for f in files:
            labels = read_mask(f)
            (sets["gt"] / seq).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, sets["gt"] / seq / f.name)
            write_palette_png(sets["first"] / seq / f.name, first)
            write_palette_png(sets["perturbed"] / seq / f.name, perturb(labels, rng))
    return sets


def run_official(official: Path, davis: Path, sequences: list[str], results: Path, tmp: Path) -> tuple[dict, float]:
    """Global statistics from the official code, computed as its evaluation_method.py does."""
    sys.path.insert(0, str(official))
    from davis2017.evaluation import DAVISEvaluation  # type: ignore[import-not-found]

    root = tmp / "official_root"
    if not root.exists():
        (root / "ImageSets" / "2017").mkdir(parents=True)
        (root / "ImageSets" / "2017" / "train.txt").write_text("\n".join(sequences) + "\n")
        (root / "JPEGImages").symlink_to((davis / "JPEGImages").resolve())
        (root / "Annotations").symlink_to((davis / "Annotations").resolve())
    evaluator = DAVISEvaluation(davis_root=str(root), task="semi-supervised", gt_set="train", sequences=sequences)
    start = time.perf_counter()
    metrics = evaluator.evaluate(str(results))
    seconds = time.perf_counter() - start
    j, f = metrics["J"], metrics["F"]
    stats = {"J-Mean": np.mean(j["M"]), "J-Recall": np.mean(j["R"]), "J-Decay": np.mean(j["D"]),
             "F-Mean": np.mean(f["M"]), "F-Recall": np.mean(f["R"]), "F-Decay": np.mean(f["D"])}
    stats["J&F-Mean"] = (stats["J-Mean"] + stats["F-Mean"]) / 2
    return {k: float(v) for k, v in stats.items()}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS root (JPEGImages/, Annotations/, ImageSets/)")
    parser.add_argument("--official", type=Path, help="checkout of davis2017-evaluation (omit to time memvos only)")
    parser.add_argument("--sequences", nargs="+", help="default: every sequence of ImageSets/train.txt")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    gt_dir = args.davis / "Annotations" / "480p"
    sequences = args.sequences or (args.davis / "ImageSets" / "train.txt").read_text().split()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sets = make_predictions(gt_dir, sequences, tmp / "preds")
        print(f"{len(sequences)} sequences; times are the evaluation call only (no interpreter start-up)")
        for name, folder in sets.items():
            start = time.perf_counter()
            ours = evaluate_folders(gt_dir, folder, workers=args.workers).global_statistics()
            ours_s = time.perf_counter() - start
            line = f"{name:10s} memvos {ours_s:6.2f}s  " + " ".join(f"{k}={ours[k]:.4f}" for k in GLOBAL_KEYS)
            print(line)
            if args.official:
                official, off_s = run_official(args.official, args.davis, sequences, folder, tmp)
                diff = max(abs(ours[k] - official[k]) for k in GLOBAL_KEYS)
                print(f"{'':10s} official {off_s:5.2f}s  "
                      + " ".join(f"{k}={official[k]:.4f}" for k in GLOBAL_KEYS)
                      + f"\n{'':10s} max |difference| = {diff:.2e}; speed-up {off_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
