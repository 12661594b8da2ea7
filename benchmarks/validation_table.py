"""Markdown table of validation-split results side by side (the JSON files of validation_split.py).

Usage:
    python benchmarks/validation_table.py NAME=runs/val-a.json NAME2=runs/val-b.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from memvos.train.splits import HARD, HELD_OUT_SIX, OUTSIDE


def main() -> None:
    runs = []
    for arg in sys.argv[1:]:
        name, _, path = arg.partition("=")
        data = json.loads(Path(path).read_text())
        runs.append((name, {(r["dataset"], r["sequence"]): r for r in data["rows"]}))
    print("| sequence | kind | " + " | ".join(name for name, _ in runs) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in runs) + " |")
    for group, members in (("hard", HARD), ("six", HELD_OUT_SIX), ("outside", OUTSIDE)):
        if not any((m.dataset, m.name) in rows for _, rows in runs for m in members):
            continue  # a part no run scored
        for item in members:
            cells = [f"{rows[(item.dataset, item.name)]['J&F']:.3f}" if (item.dataset, item.name) in rows else "–"
                     for _, rows in runs]
            print(f"| {item.name} | {item.kind} | " + " | ".join(cells) + " |")
        means = []
        for _, rows in runs:
            scores = [rows[(m.dataset, m.name)]["J&F"] for m in members if (m.dataset, m.name) in rows]
            means.append(f"**{np.mean(scores):.3f}**" if len(scores) == len(members) else "–")
        print(f"| **mean, {group}** | | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main()
