"""DAVIS interactive evaluation (scribbles in, J&F-versus-time AUC out), driven locally.

This reproduces the protocol of ``davisinteractive`` 1.0.4 (the DAVIS Interactive Challenge
package): its ``EvaluationService`` and ``DavisInteractiveSession`` insist on the complete
DAVIS-2017 file list, so we run its scribble robot and metrics ourselves, with the same rules:

* interaction 1 starts from a human scribble (``Scribbles/<seq>/001.json``) or, where none is
  given, from the robot's scribble on an all-background prediction;
* after every interaction the masks of *all* frames are scored per object with the package's
  ``batched_jaccard`` / ``batched_f_measure``; the robot then draws the next scribble on the frame
  with the lowest mean J&F among the frames it has not been sent to yet;
* a sequence stops after ``max_interactions``, or when the model time exceeds ``max_time`` seconds
  per object (a round finishing after that budget is discarded, as the service does);
* ``summarize`` computes the AUC of the J&F-versus-cumulative-time curve and J&F at 60 s exactly
  as ``EvaluationService.summarize_report`` does.

Only the model's own work is timed (``interact`` calls and ``propagate``); the robot and the
metrics are not, so timings do not depend on how slow the evaluation side is.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import cv2
import numpy as np

from memvos.data.palette import VOID_ID
from memvos.errors import InputError

log = logging.getLogger(__name__)

INSTALL_COMMAND = ("pip install 'memvos[interactive]' && "
                   "pip install --no-deps --no-build-isolation davisinteractive==1.0.4")
# The evaluation service's robot (davisinteractive.evaluation.service.ROBOT_DEFAULT_PARAMETERS).
ROBOT_PARAMETERS = {"kernel_size": 0.2, "max_kernel_radius": 16, "min_nb_nodes": 4, "nb_points": 1000}
TIME_THRESHOLD = 60.0  # seconds: the challenge reports J&F at 60 s
HELD_OUT_COUNT = 6  # the last sequences of ImageSets/train.txt, kept out of training

Session = Any  # duck-typed: interact(frame, object_id, positive=, negative=), propagate(), masks()


@functools.cache
def load_davisinteractive() -> types.SimpleNamespace:
    """The robot class, metrics and scribble rasteriser of ``davisinteractive``, imported lazily.

    The package (1.0.4, its last release) uses names that newer libraries removed: ``np.int``,
    ``np.float``, ``np.bool`` (gone in numpy 1.24), ``np.trapz`` (gone in numpy 2.4; its
    ``summarize_report`` calls it) and ``networkx.from_scipy_sparse_matrix`` (gone in networkx
    3.0; its robot calls it). Each is restored to its exact old meaning, only when absent, so
    nothing else that uses numpy or networkx sees a change. The robot's skeleton is also seeded
    (see ``_seed_medial_axis``) so that its scribbles are reproducible.
    """
    for name, value in (("int", int), ("float", float), ("bool", bool)):
        if not hasattr(np, name):
            setattr(np, name, value)
    if not hasattr(np, "trapz") and hasattr(np, "trapezoid"):
        np.trapz = np.trapezoid
    try:
        import networkx as nx

        if not hasattr(nx, "from_scipy_sparse_matrix") and hasattr(nx, "from_scipy_sparse_array"):
            nx.from_scipy_sparse_matrix = nx.from_scipy_sparse_array
        from davisinteractive.metrics import batched_f_measure, batched_jaccard
        from davisinteractive.robot import InteractiveScribblesRobot, interactive_robot
        from davisinteractive.utils.scribbles import scribbles2mask
    except ImportError as err:
        raise InputError(None, f"the interactive evaluation needs the davisinteractive package ({err});"
                               f" install it with: {INSTALL_COMMAND}") from None
    _seed_medial_axis(interactive_robot)
    return types.SimpleNamespace(InteractiveScribblesRobot=InteractiveScribblesRobot, batched_jaccard=batched_jaccard,
                                 batched_f_measure=batched_f_measure, scribbles2mask=scribbles2mask)


def _seed_medial_axis(robot_module: types.ModuleType) -> None:
    """Make the robot deterministic: its skeleton (``medial_axis``) breaks ties with a fixed seed.

    scikit-image's ``medial_axis`` breaks ties randomly — from a fresh unseeded generator since
    0.19, from numpy's global one before — so the same prediction could get different scribbles
    and two models could not be compared on equal terms. Seed 0 for every call fixes that.
    """
    original = robot_module.medial_axis
    if getattr(original, "memvos_seeded", False):
        return
    parameters = inspect.signature(original).parameters
    name = "rng" if "rng" in parameters else "random_state" if "random_state" in parameters else None
    if name is None:
        return

    @functools.wraps(original)
    def seeded(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault(name, 0)
        return original(*args, **kwargs)

    seeded.memvos_seeded = True
    robot_module.medial_axis = seeded


def make_robot() -> Any:
    """The scribble robot with the evaluation service's parameters."""
    return load_davisinteractive().InteractiveScribblesRobot(**ROBOT_PARAMETERS)


# ----------------------------------------------------------------------------- scribbles


def annotated_frames(scribble: Mapping) -> list[int]:
    """Frames that hold at least one stroke (as ``davisinteractive.utils.scribbles.annotated_frames``)."""
    return [i for i, strokes in enumerate(scribble["scribbles"]) if strokes]


def annotated_frame(scribble: Mapping) -> int:
    """The frame a DAVIS scribble annotates (the robot and the human files draw on one frame)."""
    frames = annotated_frames(scribble)
    if not frames:
        raise ValueError("the scribble has no stroke")
    return frames[0]


def scribble_object_ids(scribble: Mapping) -> set[int]:
    """Object ids the strokes are labelled with (0 is background)."""
    return {int(stroke["object_id"]) for strokes in scribble["scribbles"] for stroke in strokes}


def stroke_radius(shape: Sequence[int]) -> int:
    """Half-width in pixels given to strokes: the same as the synthesised ones (3 px at 480p)."""
    from memvos.data.scribbles import stroke_width_for

    return stroke_width_for((int(shape[0]), int(shape[1])))


def stroke_labels(scribble: Mapping, frame: int, shape: Sequence[int]) -> np.ndarray:
    """(H, W) int map of a frame's strokes, thickened: -1 off the strokes, else the stroke's object id.

    ``scribbles2mask`` draws 1-pixel Bresenham lines, which the model's downsampled input would
    mostly lose and which are far thinner than a brush in an annotation tool; each pixel within
    ``stroke_radius`` of a stroke takes the label of the nearest stroke pixel, so thickening never
    lets two labels overlap.
    """
    from scipy import ndimage

    h, w = int(shape[0]), int(shape[1])
    one_frame = {"scribbles": [scribble["scribbles"][frame]], "sequence": scribble.get("sequence", "")}
    labels = np.asarray(load_davisinteractive().scribbles2mask(one_frame, output_resolution=(h, w))[0])
    drawn = labels >= 0
    if not drawn.any():
        return labels
    distance, (iy, ix) = ndimage.distance_transform_edt(~drawn, return_indices=True)
    thick = labels[iy, ix]
    thick[distance > stroke_radius((h, w))] = -1
    return thick


def scribble_maps(scribble: Mapping, frame: int, shape: Sequence[int],
                  object_ids: Iterable[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per object id, (positive, negative) bool (H, W) maps of a frame's thickened strokes.

    Positive: strokes labelled with that id; negative: strokes labelled with any other id,
    background (0) included — a stroke for object A says "not B" for every other object B.
    """
    labels = stroke_labels(scribble, frame, shape)
    drawn = labels >= 0
    return {int(k): (labels == k, drawn & (labels != k)) for k in object_ids}


def check_scribble(scribble: Mapping, nb_frames: int, nb_objects: int,
                   source: str | Path | None = None, sequence: str | None = None) -> None:
    """Raise a one-line InputError if a scribble does not fit the sequence (frames, object ids, name)."""
    if not isinstance(scribble, Mapping) or not isinstance(scribble.get("scribbles"), list):
        raise InputError(source, "not a DAVIS scribble: needs a 'scribbles' list with one list of strokes per frame")
    if sequence is not None and scribble.get("sequence", sequence) != sequence:
        raise InputError(source, f"scribble is for sequence {scribble.get('sequence')!r}, not {sequence!r}")
    if len(scribble["scribbles"]) != nb_frames:
        raise InputError(source, f"scribble has {len(scribble['scribbles'])} frames but the sequence has {nb_frames}")
    try:
        ids = scribble_object_ids(scribble)
    except (KeyError, TypeError, ValueError):
        raise InputError(source, "a stroke lacks an integer 'object_id'") from None
    if any(k < 0 or k > nb_objects for k in ids):
        raise InputError(source, f"scribble labels strokes with object ids {sorted(ids)} but the ground truth has"
                                 f" {nb_objects} object(s)")
    if not annotated_frames(scribble):
        raise InputError(source, "scribble has no stroke")


def read_scribble(path: str | Path) -> dict:
    """Load a DAVIS scribble JSON file, or raise a one-line InputError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "scribble file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"unreadable scribble JSON ({err})") from None


def find_first_scribble(sequence: str, dirs: Iterable[str | Path]) -> Path | None:
    """First existing ``<dir>/Scribbles/<seq>/001.json`` (or ``<dir>/<seq>/001.json``) among ``dirs``."""
    for folder in map(Path, dirs):
        if not folder.is_dir():
            raise InputError(folder, "scribbles folder not found")
        for candidate in (folder / "Scribbles" / sequence / "001.json", folder / sequence / "001.json"):
            if candidate.is_file():
                return candidate
    return None


# ----------------------------------------------------------------------------- protocol


def count_objects(gt: np.ndarray) -> int:
    """Objects of a sequence, ids 1..K as DAVIS numbers them: the largest id in the ground truth (void excluded)."""
    ids = np.unique(gt)
    ids = ids[(ids > 0) & (ids != VOID_ID)]
    return int(ids.max()) if ids.size else 0


def frame_scores(gt: np.ndarray, pred: np.ndarray, nb_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame per-object J and F, (T, K) each, with the package's metrics on all frames (as the service)."""
    dav = load_davisinteractive()
    jaccard = dav.batched_jaccard(gt, pred, average_over_objects=False, nb_objects=nb_objects)
    contour = dav.batched_f_measure(gt, pred, average_over_objects=False, nb_objects=nb_objects)
    return np.asarray(jaccard, np.float64), np.asarray(contour, np.float64)


def next_scribble_frame(jaccard: np.ndarray, contour: np.ndarray, used: Sequence[int]) -> int:
    """Frame for the robot's next scribble: lowest mean J&F among frames not used yet (service rules).

    As ``post_predicted_masks``: ``used`` are the frames the robot was sent to before (the first
    scribble's frame is not among them); once every frame has been used, all are candidates again
    (the storage forgets them then); ties are broken by numpy's default ``argsort``, as there.
    """
    metric = (0.5 * jaccard + 0.5 * contour).mean(axis=1)
    every = set(range(len(metric)))
    candidates = every - {int(f) for f in used} or every
    return int(next(i for i in metric.argsort() if i in candidates))


def largest_area_frame(gt: np.ndarray, nb_objects: int) -> int:
    """Frame where the objects together cover the most pixels (first such frame on ties)."""
    areas = ((gt > 0) & (gt <= nb_objects)).reshape(len(gt), -1).sum(axis=1)
    return int(np.argmax(areas))


def robot_first_scribble(name: str, gt: np.ndarray, nb_objects: int, robot: Any) -> dict:
    """The robot's scribble for an all-background prediction, on the frame where the objects are largest.

    The package ships human first scribbles for few sequences; a human annotator would most
    likely start where the objects are biggest and clearest.
    """
    frame = largest_area_frame(gt, nb_objects)
    return robot.interact(name, np.zeros_like(gt), gt, nb_objects=nb_objects, frame=frame)


def _timed_round(session: Session, scribble: Mapping, shape: Sequence[int], nb_objects: int) -> float:
    """Give a scribble to the session (every object, every annotated frame), propagate; seconds of model work.

    The strokes are rasterised before the clock starts; an object with no stroke of either
    kind on a frame is not called.
    """
    maps = [(f, scribble_maps(scribble, f, shape, range(1, nb_objects + 1))) for f in annotated_frames(scribble)]
    start = perf_counter()
    for frame, per_object in maps:
        for object_id, (positive, negative) in per_object.items():
            if positive.any() or negative.any():
                session.interact(frame, object_id, positive=positive if positive.any() else None,
                                 negative=negative if negative.any() else None)
    session.propagate()
    return perf_counter() - start


def run_sequence(name: str, frames: np.ndarray, gt: np.ndarray, make_session: Callable[[np.ndarray], Session],
                 first_scribble: Mapping | None = None, max_interactions: int = 8, max_time: float | None = None,
                 robot: Any = None) -> list[dict]:
    """Run the interactive protocol on one sequence; one record per evaluated interaction.

    Record: ``interaction`` (1-based), ``timing`` (seconds of model work), ``jaccard`` and
    ``contour`` ((T, K) arrays over all frames), ``frames`` (annotated frames) and ``scribble``.
    With ``max_time``, the budget is ``max_time * K`` seconds (the service's ``max_t`` is per
    object); a round that ends past it is discarded and the sequence stops.
    """
    if max_interactions < 1:
        raise ValueError(f"max_interactions must be at least 1, not {max_interactions}")
    gt = np.asarray(gt)
    nb_objects = count_objects(gt)
    if nb_objects == 0:
        raise InputError(None, f"sequence {name}: the ground truth has no object")
    robot = robot if robot is not None else make_robot()
    if first_scribble is not None:
        check_scribble(first_scribble, len(gt), nb_objects, f"first scribble of {name}")
        scribble = first_scribble
    else:  # may be empty where every object is too small for the robot's skeleton
        scribble = robot_first_scribble(name, gt, nb_objects, robot)
    session = make_session(frames)
    budget = None if not max_time else max_time * nb_objects
    shape = gt.shape[1:3]
    records: list[dict] = []
    used: list[int] = []
    elapsed, told = 0.0, False
    pred = np.zeros_like(gt)
    for interaction in range(1, max_interactions + 1):
        seconds = 0.0
        if annotated_frames(scribble):  # the robot draws nothing where the prediction is right
            seconds = _timed_round(session, scribble, shape, nb_objects)
            told = True
        elapsed += seconds
        if budget is not None and elapsed > budget:
            log.info("%s: round %d ends after %.1f s > %.1f s budget: discarded", name, interaction, elapsed, budget)
            break
        pred = _session_masks(session, gt.shape) if told else pred
        jaccard, contour = frame_scores(gt, pred, nb_objects)
        records.append({"interaction": interaction, "timing": seconds, "jaccard": jaccard, "contour": contour,
                        "frames": annotated_frames(scribble), "scribble": scribble})
        if interaction == max_interactions:
            break
        used.append(next_scribble_frame(jaccard, contour, used))
        scribble = robot.interact(name, pred, gt, nb_objects=nb_objects, frame=used[-1])
    return records


def _session_masks(session: Session, shape: Sequence[int]) -> np.ndarray:
    """The session's (T, H, W) labels, checked against the ground truth's shape."""
    pred = np.asarray(session.masks())
    if pred.shape != tuple(shape):
        raise ValueError(f"session masks have shape {pred.shape}, the ground truth {tuple(shape)}")
    return pred


# ----------------------------------------------------------------------------- summary


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """``np.trapezoid`` (numpy >= 2) or ``np.trapz`` (older numpy)."""
    fn = getattr(np, "trapezoid", None) or np.trapz
    return float(fn(y, x=x))


def _sequence_table(records: Sequence[Mapping], nb_objects: int, max_i: int) -> tuple[np.ndarray, np.ndarray]:
    """(max_i, K) J&F (frame means) and (max_i,) timing; missing rounds repeat the last values with timing 0.

    As ``EvaluationService._reconstruct_report``: before any evaluated round the values are 0,
    and a round with a NaN anywhere counts as missing.
    """
    by_round = {int(r["interaction"]): r for r in records}
    jf = np.zeros((max_i, nb_objects))
    timing = np.zeros(max_i)
    previous = np.zeros(nb_objects)
    for i in range(1, max_i + 1):
        record = by_round.get(i)
        if record is not None:
            per_frame = 0.5 * np.asarray(record["jaccard"], float) + 0.5 * np.asarray(record["contour"], float)
            values = per_frame.mean(axis=0)
            if np.isfinite(values).all() and math.isfinite(record["timing"]):
                previous = values
                jf[i - 1], timing[i - 1] = values, float(record["timing"])
                continue
        jf[i - 1] = previous
    return jf, timing


def summarize(records_per_sequence: Mapping[str, Sequence[Mapping]], max_interactions: int | None,
              max_time: float | None, time_threshold: float = TIME_THRESHOLD,
              nb_objects: Mapping[str, int] | None = None) -> dict:
    """AUC and J&F at ``time_threshold`` of the mean J&F-versus-time curve, as ``summarize_report``.

    J&F per interaction is the mean over every (sequence, object) of its frame-mean J&F; time
    is the cumulative mean over sequences of the round timing; the curve starts at (0, 0) and
    ends with a flat segment to the global timeout (mean objects * ``max_time``, else
    ``max_interactions`` * the longest round). AUC = trapezoid area / last time.
    ``nb_objects`` is needed only for a sequence without any record.
    """
    names = list(records_per_sequence)
    if not names:
        raise ValueError("no sequence to summarize")
    counts = {n: _objects_of(n, records_per_sequence[n], nb_objects) for n in names}
    recorded = [r for n in names for r in records_per_sequence[n]]
    max_i = max_interactions or max((int(r["interaction"]) for r in recorded), default=1)
    tables = {n: _sequence_table(records_per_sequence[n], counts[n], max_i) for n in names}

    jf_curve = np.concatenate([jf for jf, _ in tables.values()], axis=1).mean(axis=1)
    time_curve = np.cumsum(np.mean([timing for _, timing in tables.values()], axis=0))
    if max_time:
        timeout = sum(counts.values()) / len(names) * max_time
    else:
        timeout = max_i * max((float(r["timing"]) for r in recorded), default=0.0)
    time = np.concatenate(([0.0], time_curve, [timeout]))
    metric = np.concatenate(([0.0], jf_curve, jf_curve[-1:]))
    auc = 0.0 if time.max() == 0 else _trapezoid(metric, time) / float(time.max())
    timings = [float(r["timing"]) for r in recorded]
    return {
        "metric": "J_AND_F",
        "auc": float(auc),
        "jf_at_threshold": float(np.interp(time_threshold, time, metric)),
        "threshold": float(time_threshold),
        "curve": {"time": time.tolist(), "jf": metric.tolist()},
        "per_sequence": {n: {"objects": counts[n], "interactions": len(records_per_sequence[n]),
                             "jf_per_interaction": tables[n][0].mean(axis=1).tolist(),
                             "timing": tables[n][1].tolist()} for n in names},
        "seconds_per_round": float(np.mean(timings)) if timings else None,
        "max_interactions": max_i,
        "max_time": max_time,
    }


def _objects_of(name: str, records: Sequence[Mapping], nb_objects: Mapping[str, int] | None) -> int:
    """K of a sequence: given, else the width of its J table."""
    if nb_objects and name in nb_objects:
        return int(nb_objects[name])
    if not records:
        raise ValueError(f"sequence {name} has no record: give its number of objects")
    return int(np.asarray(records[0]["jaccard"]).shape[1])


def format_summary(summary: Mapping) -> str:
    """A small text table: J&F after each interaction per sequence, then AUC and J&F at the threshold."""
    rows = [("sequence", "objects", "rounds", "J&F@1", "J&F@last", "s/round")]
    for name, entry in summary["per_sequence"].items():
        jf, timing = entry["jf_per_interaction"], entry["timing"][: entry["interactions"]]
        rows.append((name, str(entry["objects"]), str(entry["interactions"]), f"{jf[0]:.3f}", f"{jf[-1]:.3f}",
                     f"{np.mean(timing):.2f}" if timing else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    per_round = summary["seconds_per_round"]
    lines.append(f"AUC {summary['auc']:.3f}  J&F@{summary['threshold']:g}s {summary['jf_at_threshold']:.3f}  "
                 f"{'-' if per_round is None else f'{per_round:.2f}'} s/round")
    return "\n".join(lines)


def save_summary(summary: Mapping, path: str | Path) -> None:
    """Write the summary as JSON, atomically."""
    from memvos.data.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")


# ----------------------------------------------------------------------------- dataset driver


def held_out_sequences(davis_root: str | Path, count: int = HELD_OUT_COUNT) -> list[str]:
    """The last ``count`` sequences of ``ROOT/ImageSets/train.txt`` (the held-out validation split)."""
    from memvos.data.datasets import DavisDataset

    return DavisDataset(davis_root, split="train").sequences[-count:]


def load_sequence(dataset: Any, name: str, short_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 frames and (T, H, W) uint8 labels of a DAVIS sequence; every frame needs a mask."""
    seq = dataset[name]
    missing = [n for n in seq.frames.names if n not in seq.annotations]
    if missing:
        raise InputError(dataset.mask_dir / name, f"no ground-truth mask for frame {missing[0]}"
                                                  f" ({len(missing)} of {len(seq.frames)} missing)")
    frames = np.stack(list(seq.frames))
    gt = np.stack([seq.read_annotation(n) for n in seq.frames.names])
    return resize_sequence(frames, gt, short_side) if short_side else (frames, gt)


def resize_sequence(frames: np.ndarray, gt: np.ndarray, short_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (area) and labels (nearest) scaled so the short side is ``short_side`` (faster, not official)."""
    h, w = gt.shape[1:3]
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return frames, gt
    frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    gt = np.stack([cv2.resize(g, size, interpolation=cv2.INTER_NEAREST) for g in gt])
    return frames, gt


def evaluate_interactive(davis_root: str | Path, sequences: Sequence[str] | None,
                         make_session: Callable[[np.ndarray], Session], max_interactions: int = 8,
                         max_time: float | None = None, first_scribbles_dirs: Iterable[str | Path] = (),
                         short_side: int | None = None, progress: bool = True,
                         time_threshold: float = TIME_THRESHOLD) -> dict:
    """Interactive evaluation of DAVIS sequences (default: the held-out ones) and its summary.

    A sequence's first scribble is the first ``Scribbles/<seq>/001.json`` found in
    ``first_scribbles_dirs``, else the robot's. Sequence folders and scribble files are checked
    before any model work, so a bad path fails at once.
    """
    from tqdm import tqdm

    from memvos.data.datasets import DavisDataset

    if max_interactions < 1:
        raise InputError(None, f"max_interactions must be at least 1, not {max_interactions}")
    if max_time is not None and max_time <= 0:
        raise InputError(None, f"max_time must be positive, not {max_time}")
    if short_side is not None and short_side < 32:
        raise InputError(None, f"short_side must be at least 32 pixels, not {short_side}")
    dataset = DavisDataset(davis_root)
    names = list(sequences) if sequences else held_out_sequences(davis_root)
    scribble_files = _check_inputs(dataset, names, list(first_scribbles_dirs))
    load_davisinteractive()
    robot = make_robot()
    records: dict[str, list[dict]] = {}
    counts: dict[str, int] = {}
    for name in tqdm(names, desc="interactive eval", unit="seq", disable=not progress):
        frames, gt = load_sequence(dataset, name, short_side)
        counts[name] = count_objects(gt)
        first = None
        if scribble_files[name] is not None:
            first = read_scribble(scribble_files[name])
            check_scribble(first, len(gt), counts[name], scribble_files[name], sequence=name)
        records[name] = run_sequence(name, frames, gt, make_session, first, max_interactions, max_time, robot)
        if records[name]:
            last = records[name][-1]
            log.info("%s: J&F %.3f after %d interaction(s)", name,
                     float((0.5 * last["jaccard"] + 0.5 * last["contour"]).mean()), len(records[name]))
    summary = summarize(records, max_interactions, max_time, time_threshold, nb_objects=counts)
    summary["first_scribbles"] = {n: None if p is None else str(p) for n, p in scribble_files.items()}
    summary["short_side"] = short_side
    return summary


def _check_inputs(dataset: Any, names: Sequence[str], dirs: Sequence[str | Path]) -> dict[str, Path | None]:
    """Check every sequence folder and scribble file before evaluating; the scribble file of each sequence."""
    files: dict[str, Path | None] = {}
    for name in names:
        if name not in dataset.sequences:
            raise InputError(dataset.image_dir / name, "sequence folder not found")
        if not (dataset.mask_dir / name).is_dir():
            raise InputError(dataset.mask_dir / name, "ground-truth folder not found")
        files[name] = find_first_scribble(name, dirs)
        if files[name] is not None:
            # object ids are checked against the ground truth once it is loaded
            check_scribble(read_scribble(files[name]), len(dataset[name].frames), VOID_ID - 1, files[name], name)
    return files
