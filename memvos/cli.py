"""The `memvos` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from memvos import __version__
from memvos.errors import InputError
from memvos.model.loading import load_models, override_read, parse_scales

# memvos.model.precision.PRECISIONS, not imported here: it would load torch for `--help`.
PRECISION_CHOICES = ("auto", "float32", "bfloat16")


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"memvos: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"


class _ProgressAwareHandler(logging.StreamHandler):
    """Writes through tqdm, so a message gets its own line above a progress bar, not onto it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _OnceFilter(logging.Filter):
    """Each distinct message once per run (a mask read twice reports its colour mapping once)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _setup_logging(verbose: bool) -> None:
    handler = _ProgressAwareHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    handler.addFilter(_OnceFilter())
    root = logging.getLogger("memvos")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _cmd_demo(args: argparse.Namespace) -> int:
    from memvos.demo import run_demo
    from memvos.eval.report import format_tables

    result = run_demo(args.out, checkpoint=args.checkpoint)
    print(format_tables(result))
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from memvos.data.frames import open_frames
    from memvos.segment import check_segment_outputs, masks_from_folder, segment_video

    if args.mask is None and args.masks is None:
        return _segment_dataset(args)
    for flag, value in (("--sequences", args.sequences), ("--split", args.split), ("--shard", args.shard)):
        if value:
            raise InputError(None, f"{flag} is for a dataset folder (DAVIS or YouTube-VOS), not with --mask/--masks")
    if args.threads:
        _set_threads(args.threads)
    check_segment_outputs(args.input, args.out, args.overlay, args.overwrite)
    frames = open_frames(args.input)
    masks = masks_from_folder(args.masks, frames) if args.masks else {args.mask_frame: Path(args.mask)}
    models, config = _segment_model(args, args.device, frames.size)
    stats = segment_video(frames, masks, args.out, overlay=args.overlay, models=models, config=config,
                          offline=args.offline, overwrite=args.overwrite)
    print(f"wrote {stats['frames']} masks to {args.out}" + (f" and {args.overlay}" if args.overlay else "")
          + f" ({stats['fps']:.2f} frames/s, config {config.name}, read {models[0].read.config.mode})")
    return 0


def _segment_model(args: argparse.Namespace, device: str, frame_size: tuple[int, int]) -> tuple[list, object]:
    """The models and config `memvos segment` runs with, from its flags, for frames of ``frame_size``."""
    import dataclasses

    scales = parse_scales(args.scales)
    size = (min(scales),) * 2 if scales else frame_size  # the default model follows the processing size
    models, config = load_models(args.checkpoint, args.config, device, args.backbone_weights, args.precision,
                                 frame_size=size, enlarge=not scales)
    override_read(models, mode=args.read)
    changes = {"device": device}
    if scales:
        changes["scales"] = scales
    if args.flip:
        changes["flip"] = True
    if args.reid or args.offline:
        from memvos.inference.reid import ReidConfig

        changes["reid"] = config.inference.reid or ReidConfig()
    config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, **changes))
    return models, config


def _segment_dataset(args: argparse.Namespace) -> int:
    """`memvos segment ROOT --out OUT`: every sequence of a dataset folder (memvos.segment_dataset)."""
    from memvos.distributed import parse_shard
    from memvos.segment_dataset import run_dataset

    for flag, value in (("--overlay", args.overlay), ("--offline", args.offline)):
        if value:
            raise InputError(None, f"{flag} is for one video: give --mask or --masks with it")
    parse_scales(args.scales)  # a bad value fails before the dataset is read
    shard = parse_shard(args.shard)
    report, merged = run_dataset(args.input, args.out, lambda device, size: _segment_model(args, device, size),
                                 device=args.device, split=args.split, sequences=args.sequences, shard=shard,
                                 overwrite=args.overwrite, threads=args.threads)
    if merged is not None:
        print(merged.summary() + (f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else ""))
        for failure in merged.of("failed"):
            print(f"  failed: {failure.reason}" if failure.reason.startswith(failure.name)
                  else f"  failed: {failure.name}: {failure.reason}")
    return 1 if report.of("failed") or (merged is not None and merged.of("failed")) else 0


def _set_threads(threads: int) -> None:
    import torch

    if threads < 1:
        raise InputError(None, f"--threads must be at least 1, not {threads}")
    torch.set_num_threads(threads)


def _cmd_eval(args: argparse.Namespace) -> int:
    from memvos.data.atomic import check_output
    from memvos.eval.evaluate import evaluate_folders
    from memvos.eval.report import format_tables, save_csv, save_json

    if args.workers is not None and args.workers < 1:
        raise InputError(None, f"--workers must be at least 1, not {args.workers}")
    if args.json:
        check_output(args.json, "file")
    if args.csv:
        check_output(args.csv, "folder")
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


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from memvos.train.config import load_train_config
    from memvos.train.interaction import is_interaction_config, load_interaction_config, train_interaction
    from memvos.train.reid import is_reid_config, load_reid_config, train_reid
    from memvos.train.trainer import Trainer

    if is_reid_config(args.config):  # the re-id projection: a closed-form fit, not an SGD stage
        reid = load_reid_config(args.config, args.data_root)
        if args.out:
            reid = dataclasses.replace(reid, out=args.out)
        path, stats = train_reid(reid)
        print(f"re-id projection: {path} ({stats['regions']} regions of {stats['objects']} objects; "
              f"pair AUC raw {stats['auc_raw']:.3f} -> whitened {stats['auc_whitened']:.3f})")
        print(f"cross-fitted (half the objects fit, half score): AUC {stats['auc_held']:.3f}; cosine exceeded by 1% of "
              f"other regions {stats['sim_far1']:.2f} (same object above it: {stats['tpr_far1']:.0%}), by 10% "
              f"{stats['sim_far10']:.2f} ({stats['tpr_far10']:.0%}); same-object median {stats['sim_same_median']:.2f}")
        return 0
    if is_interaction_config(args.config):  # clicks and scribbles to a mask: its own small loop
        interaction = load_interaction_config(args.config, args.data_root)
        if args.out:
            interaction = dataclasses.replace(interaction, out=args.out)
        if args.init:
            interaction = dataclasses.replace(interaction, init=args.init)
        print(f"interaction network: {train_interaction(interaction, resume=args.resume)}")
        return 0
    config = load_train_config(args.config, args.data_root)
    if args.init:
        config = dataclasses.replace(config, init=args.init)
    trainer = Trainer(config, resume=args.resume, out=args.out)
    final = trainer.run()
    if trainer.dist.main:
        print(f"trained {trainer.iteration} iterations; weights: {final}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from memvos.train.trainer import export_checkpoint

    config = export_checkpoint(args.checkpoint, args.out, output_stride=args.output_stride)
    print(f"wrote {args.out} (fp16, config {config.name}, model {config.model_type})")
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    from memvos.model.interaction import is_interaction_weights

    if is_interaction_weights(args.weights[0]):
        from memvos.train.interaction import average_interaction_weights

        average_interaction_weights(args.weights, args.out)
        print(f"wrote {args.out} (fp16, the mean of {len(args.weights)} interaction-network weights)")
        return 0
    from memvos.train.trainer import average_weights

    config = average_weights(args.weights, args.out)
    print(f"wrote {args.out} (fp16, the mean of {len(args.weights)} weights, config {config.name})")
    return 0


def _cmd_interactive_eval(args: argparse.Namespace) -> int:
    from memvos.eval.interactive import evaluate_interactive, format_summary, held_out_sequences, save_summary

    if args.max_interactions < 1:
        raise InputError(None, f"--max-interactions must be at least 1, not {args.max_interactions}")
    if args.max_time is not None and args.max_time <= 0:
        raise InputError(None, f"--max-time must be a positive number of seconds, not {args.max_time}")
    if args.short_side is not None and args.short_side < 32:
        raise InputError(None, f"--short-side must be at least 32 pixels, not {args.short_side}")
    if args.threads is not None and args.threads < 1:
        raise InputError(None, f"--threads must be at least 1, not {args.threads}")
    sequences = args.sequences or held_out_sequences(args.davis)  # checks the DAVIS folder before the model loads
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from memvos.inference.interactive import InteractiveConfig, InteractiveSession, interactive_models, session_config

    short_side = args.short_side or InteractiveConfig().max_short_side
    models = interactive_models(args.checkpoint, short_side=short_side)

    def session(frames) -> InteractiveSession:
        model, config = models(frames)
        return InteractiveSession(frames, model=model, config=session_config(config, prior=args.prior, max_short_side=short_side))

    summary = evaluate_interactive(args.davis, sequences, session,
                                   max_interactions=args.max_interactions, max_time=args.max_time,
                                   first_scribbles_dirs=args.scribbles)
    summary["processing_short_side"] = short_side
    summary["prior"] = args.prior
    print(format_summary(summary))
    if args.json:
        save_summary(summary, args.json)
    return 0


def _cmd_app(args: argparse.Namespace) -> int:
    try:
        from memvos.app.server import serve
    except ImportError as err:
        if (err.name or "").startswith("memvos"):
            raise
        raise InputError(None, f"the web app needs its extra ({err.name} is missing): pip install -e '.[app]'") from None
    if not 0 <= args.port <= 65535:
        raise InputError(None, f"--port must be in 0..65535, not {args.port}")
    if args.short_side is not None and args.short_side < 32:
        raise InputError(None, f"--short-side must be at least 32 pixels, not {args.short_side}")
    if args.threads is not None and args.threads < 1:
        raise InputError(None, f"--threads must be at least 1, not {args.threads}")
    if args.max_upload_mb <= 0 or args.heartbeat <= 0 or args.session_timeout <= 0:
        raise InputError(None, "--max-upload-mb, --heartbeat and --session-timeout must be positive")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    serve(args.root or ["."], host=args.host, port=args.port, checkpoint=args.checkpoint,
          short_side=args.short_side, heartbeat=args.heartbeat, max_upload=int(args.max_upload_mb * (1 << 20)),
          allow_hosts=args.allow_host or (), session_timeout=args.session_timeout * 60)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memvos", description="Video object segmentation with space-time memory.")
    parser.add_argument("--version", action="version", version=f"memvos {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print debugging messages")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="segment a built-in demo clip and score it")
    demo.add_argument("--out", default="memvos-demo", help="output folder (default: ./memvos-demo)")
    demo.add_argument("--checkpoint", help="model weights (default: the best model memvos ships)")
    demo.set_defaults(func=_cmd_demo)

    seg = sub.add_parser("segment", help="segment the objects of a video (or of every video of a dataset folder) "
                                          "from masks given on some frames")
    seg.add_argument("input", help="a frame folder or a video file (with --mask or --masks), or a DAVIS or "
                                   "YouTube-VOS folder: each sequence from its Annotations, into OUT_DIR/<sequence>/")
    given = seg.add_mutually_exclusive_group()
    given.add_argument("--mask", help="mask image (palette, binary or RGB) of one frame")
    given.add_argument("--masks", metavar="MASK_DIR", help="folder of masks named like the frames; each is used at its frame")
    seg.add_argument("--mask-frame", type=int, default=0, metavar="K", help="frame of --mask (default 0)")
    seg.add_argument("--out", required=True, metavar="OUT_DIR", help="folder for one palette PNG per frame")
    seg.add_argument("--overlay", metavar="OUT.mp4", help="also write an overlay video")
    seg.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it is not empty (as a whole)")
    seg.add_argument("--config", help="preset name or YAML file (default: the best shipped model for the video: "
                                       "frozen-key-lite0-fast from 240p up, frames below 480p enlarged to 480; "
                                       "frozen-key-lite0 below 240p)")
    seg.add_argument("--checkpoint", action="append", help="weights file; repeat for an ensemble")
    seg.add_argument("--backbone-weights", metavar="FILE",
                     help="ImageNet backbone state dict (e.g. torchvision resnet50) for a training-free config")
    seg.add_argument("--device", default="cpu", help="cpu or cuda")
    seg.add_argument("--read", choices=("stm", "kmn"), help="memory read (default: the config's)")
    seg.add_argument("--scales", help="processing short sides, comma separated (e.g. 480,600): averaged")
    seg.add_argument("--flip", action="store_true", help="also run on the mirrored video and average")
    seg.add_argument("--precision", choices=PRECISION_CHOICES,
                     help="compute precision of the encoders and memory-read selection (default: the config's, "
                          "auto = bfloat16 where the CPU does it natively)")
    seg.add_argument("--reid", action="store_true",
                     help="re-identify objects lost to occlusion or exit instead of following look-alikes")
    seg.add_argument("--offline", action="store_true",
                     help="re-identification plus bidirectional propagation from re-identified frames "
                          "(several passes; masks are written at the end)")
    seg.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: all cores, shared "
                                                               "among the processes of a node under torchrun)")
    seg.add_argument("--sequences", nargs="+", metavar="SEQ", help="dataset folder: only these sequences")
    seg.add_argument("--split", metavar="NAME", help="dataset folder: DAVIS ImageSets/<NAME>.txt or YouTube-VOS "
                                                     "<NAME>/ (default: every sequence folder / the one split there)")
    seg.add_argument("--shard", metavar="K/N", help="dataset folder: segment part K (0..N-1) of N, for array "
                                                    "jobs; under torchrun each part is split again across ranks")
    seg.set_defaults(func=_cmd_segment)

    ev = sub.add_parser("eval", help="DAVIS J&F of predicted masks against ground truth")
    ev.add_argument("gt_dir", help="ground truth: GT_DIR/<sequence>/<frame>.png")
    ev.add_argument("pred_dir", help="predictions: PRED_DIR/<sequence>/<frame>.png (its sequences are scored)")
    ev.add_argument("--json", metavar="OUT.json", help="write the statistics as JSON")
    ev.add_argument("--csv", metavar="OUT_DIR", help="write global_results.csv and per-sequence_results.csv")
    ev.add_argument("--all-frames", action="store_true", help="also score the first and the last frame")
    ev.add_argument("--sequences", nargs="+", metavar="SEQ", help="score only these sequences")
    ev.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ev.set_defaults(func=_cmd_eval)

    tr = sub.add_parser("train", help="train a model (one stage per YAML config; torchrun for several processes)")
    tr.add_argument("--config", required=True, metavar="FILE", help="training YAML, e.g. configs/train/stage0-static.yaml")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    tr.add_argument("--out", help="output folder (default: the config's `out`)")
    tr.add_argument("--data-root", metavar="DIR",
                    help="folder that $DATA_ROOT in the YAML's data paths names (default: $MEMVOS_DATA_ROOT)")
    tr.add_argument("--init", metavar="WEIGHTS", help="start from these weights (default: the config's `init`)")
    tr.set_defaults(func=_cmd_train)

    ex = sub.add_parser("export", help="training checkpoint -> fp16 safetensors that --checkpoint loads")
    ex.add_argument("checkpoint", help="a training checkpoint (last.pt or best.pt), or exported .safetensors")
    ex.add_argument("out", help="output .safetensors file")
    ex.add_argument("--output-stride", type=int, choices=(8, 16),
                    help="frozen-key networks: the same weights with keys at stride 8 (small frames) or 16")
    ex.set_defaults(func=_cmd_export)
    av = sub.add_parser("average", help="the mean of several weights of one training run -> fp16 safetensors")
    av.add_argument("out", help="output .safetensors file (the first input's config)")
    av.add_argument("weights", nargs="+", help="exported .safetensors or training checkpoints of one network")
    av.set_defaults(func=_cmd_average)
    ie = sub.add_parser("interactive-eval", help="DAVIS interactive protocol: robot scribbles, J&F-versus-time AUC")
    ie.add_argument("--davis", required=True, metavar="ROOT",
                    help="DAVIS folder: JPEGImages/480p, Annotations/480p, ImageSets/train.txt")
    ie.add_argument("--sequences", nargs="+", metavar="SEQ", help="sequences (default: the last 6 of ImageSets/train.txt)")
    ie.add_argument("--checkpoint", help="propagation model: weights or preset (default: frozen-key-lite0-fast)")
    ie.add_argument("--max-interactions", type=int, default=8, metavar="N", help="rounds per sequence (default 8)")
    ie.add_argument("--max-time", type=float, metavar="SECONDS",
                    help="model time allowed per object of a sequence; a round ending later is not scored (default: none)")
    ie.add_argument("--scribbles", nargs="+", default=[], metavar="DIR",
                    help="folders holding Scribbles/<seq>/001.json first scribbles (default: the robot draws the first)")
    ie.add_argument("--short-side", type=int, metavar="PIXELS",
                    help="process frames downsized to this short side (default 480); masks are scored at full size")
    ie.add_argument("--prior", choices=("network", "grabcut", "paint"), default="network",
                    help="the annotated frame's mask from strokes: the interaction network (default), or a guess "
                         "(GrabCut, painting) refined by the memory network")
    ie.add_argument("--json", metavar="OUT.json", help="write the summary, curve and per-sequence rounds as JSON")
    ie.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    ie.set_defaults(func=_cmd_interactive_eval)

    app = sub.add_parser("app", help="the web app: open a video, scribble, propagate, correct, export")
    app.add_argument("--root", action="extend", nargs="+", metavar="DIR",
                     help="folder the app may open videos from; repeat for several (default: the current folder)")
    app.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860; 0: any free port)")
    app.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    app.add_argument("--allow-host", action="append", metavar="NAME",
                     help="also answer requests addressed to this host name (e.g. behind a proxy); '*' for any. "
                          "Default: loopback names, the --host address, and this machine's names when --host is 0.0.0.0")
    app.add_argument("--checkpoint", help="propagation model: weights or preset (default: frozen-key-lite0-fast)")
    app.add_argument("--short-side", type=int, metavar="PIXELS", help="process frames downsized to this (default 480)")
    app.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    app.add_argument("--max-upload-mb", type=float, default=32.0, metavar="MB", help="largest request body (default 32)")
    app.add_argument("--heartbeat", type=float, default=5.0, metavar="SECONDS",
                     help="a propagation no page or client has watched for this long is cancelled (default 5)")
    app.add_argument("--session-timeout", type=float, default=30.0, metavar="MINUTES",
                     help="a session no page has shown for this long is closed (default 30; until then a "
                          "reloaded page reopens it)")
    app.set_defaults(func=_cmd_app)

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
