"""The `memvos` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from memvos import __version__
from memvos.errors import InputError


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"memvos: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    root = logging.getLogger("memvos")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _cmd_demo(args: argparse.Namespace) -> int:
    from memvos.demo import run_demo
    from memvos.eval.report import format_tables

    result = run_demo(args.out)
    print(format_tables(result))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from memvos.eval.evaluate import evaluate_folders
    from memvos.eval.report import format_tables, save_csv, save_json

    result = evaluate_folders(args.gt_dir, args.pred_dir, all_frames=args.all_frames,
                              sequences=args.sequences, workers=args.workers)
    if not result.objects:
        raise InputError(args.pred_dir, "no object has a frame to score")
    print(format_tables(result))
    if args.json:
        save_json(result, args.json)
    if args.csv:
        save_csv(result, args.csv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memvos", description="Video object segmentation with space-time memory.")
    parser.add_argument("--version", action="version", version=f"memvos {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print debugging messages")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="segment a built-in demo clip and score it")
    demo.add_argument("--out", default="memvos-demo", help="output folder (default: ./memvos-demo)")
    demo.set_defaults(func=_cmd_demo)

    ev = sub.add_parser("eval", help="DAVIS J&F of predicted masks against ground truth")
    ev.add_argument("gt_dir", help="ground truth: GT_DIR/<sequence>/<frame>.png")
    ev.add_argument("pred_dir", help="predictions: PRED_DIR/<sequence>/<frame>.png (its sequences are scored)")
    ev.add_argument("--json", metavar="OUT.json", help="write the statistics as JSON")
    ev.add_argument("--csv", metavar="OUT_DIR", help="write global_results.csv and per-sequence_results.csv")
    ev.add_argument("--all-frames", action="store_true", help="also score the first and the last frame")
    ev.add_argument("--sequences", nargs="+", metavar="SEQ", help="score only these sequences")
    ev.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ev.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except InputError as err:
        print(f"memvos: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memvos: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
