"""Printing and saving evaluation results: console tables, JSON and CSV files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from memvos.data.atomic import atomic_path
from memvos.eval.evaluate import GLOBAL_KEYS, EvaluationResult

OBJECT_KEYS = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def format_tables(result: EvaluationResult) -> str:
    """Per-sequence table (one row per object) followed by the global table."""
    rows = [("Sequence", "Object", "Frames", "J&F", "J-Mean", "F-Mean")]
    for name, entry in result.per_sequence().items():
        for obj, stats in entry["objects"].items():
            jf = (stats["J-Mean"] + stats["F-Mean"]) / 2
            rows.append((name, obj, str(stats["frames"]), f"{jf:.3f}", f"{stats['J-Mean']:.3f}", f"{stats['F-Mean']:.3f}"))
    g = result.global_statistics()
    lines = [_table(rows), "", _table([GLOBAL_KEYS, tuple(f"{g[k]:.3f}" for k in GLOBAL_KEYS)], first_left=False)]
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]], first_left: bool = True) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 and first_left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(rows[0]), "  ".join("-" * w for w in widths), *map(fmt, rows[1:])])


def save_json(result: EvaluationResult, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def save_csv(result: EvaluationResult, folder: str | Path) -> None:
    """``global_results.csv`` (one row) and ``per-sequence_results.csv`` (one row per object)."""
    folder = Path(folder)
    g = result.global_statistics()
    with atomic_path(folder / "global_results.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(GLOBAL_KEYS)
        writer.writerow([f"{g[k]:.6f}" for k in GLOBAL_KEYS])
    with atomic_path(folder / "per-sequence_results.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Sequence", "Object", "Frames", *OBJECT_KEYS])
        for name, entry in result.per_sequence().items():
            for obj, stats in entry["objects"].items():
                writer.writerow([name, obj, stats["frames"], *(f"{stats[k]:.6f}" for k in OBJECT_KEYS)])
