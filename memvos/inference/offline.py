"""Offline segmentation (the DyeNet idea): re-identified starting points, propagation in both
directions from each, and one track per object linked from the pieces.

1. A forward pass with re-identification. It gives a tracklet per object from its first
   mask, and the confident starting points: frames where a lost object was re-identified
   (its embedding matched the templates) and frames with a later mask.
2. From each starting point, a backward pass down to that object's previous starting
   point. This recovers the frames before a re-identification, where the forward pass had
   the object lost or on a look-alike.
3. Linking, per frame and object: the forward piece (from the previous starting point) and
   the backward piece (from the next one). Where only one has the object, that one is taken.
   Where both agree (IoU >= ``agree_iou``), they are averaged, weighted towards the nearer
   starting point. Where they contradict, the piece whose region is more similar to the
   object's templates is taken.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from memvos.inference.core import InferenceConfig, InferenceCore
from memvos.inference.reid import ReidConfig

AGREE_IOU = 0.5


@dataclass
class _Piece:
    """One pass's view of one object: probabilities (uint8, 0..255) and template similarity per frame."""

    probs: dict[int, np.ndarray] = field(default_factory=dict)
    similarity: dict[int, float] = field(default_factory=dict)


@dataclass
class OfflineReport:
    """What the offline run did (for logs and benchmarks)."""

    starts: dict[int, list[int]]  # object -> its starting points (annotations, then re-identifications)
    backward_frames: int  # frames processed by the backward passes
    events: dict[int, list[tuple[int, str]]]  # the forward pass's lost / re-identified events
    forward_labels: list[np.ndarray]  # the forward pass alone: what online re-identification gives
    forward_seconds: float  # time of the forward pass (the rest is backward passes and linking)


def _quantise(p: Tensor) -> np.ndarray:
    return (p.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def _run(core: InferenceCore, frames: Sequence[np.ndarray] | Callable[[int], np.ndarray], order: list[int],
         masks: dict[int, tuple[np.ndarray, tuple[int, ...] | None]], pieces: dict[int, _Piece],
         keep: Callable[[int, int], bool], tick: Callable[[], None]) -> None:
    """Step ``core`` through frames in ``order``; record each object's probabilities where ``keep(obj, t)``."""
    for t in order:
        frame = frames(t) if callable(frames) else frames[t]
        mask, ids = masks.get(t, (None, None))
        probs = core.step(frame, mask, ids)
        for k, obj in enumerate(core.object_ids, start=1):
            if keep(obj, t):
                piece = pieces.setdefault(obj, _Piece())
                piece.probs[t] = _quantise(probs[k])
                track = core.reid.tracks.get(obj)
                piece.similarity[t] = track.similarity if track is not None else 1.0
        tick()


def segment_offline(frames, masks: dict[int, np.ndarray], models, config: InferenceConfig,
                    progress: Callable[[int], None] | None = None, agree_iou: float = AGREE_IOU
                    ) -> tuple[list[np.ndarray], OfflineReport]:
    """Label maps (H, W) uint8 for every frame of ``frames`` (a FrameSource or list of RGB frames)
    from ``masks`` (frame -> label map); see the module docstring."""
    if config.reid is None:
        config = dataclasses.replace(config, reid=ReidConfig())
    n = len(frames)
    tick = (lambda: progress(1)) if progress else (lambda: None)
    given = {t: (m, None) for t, m in masks.items()}

    start = time.perf_counter()
    forward = InferenceCore(models, config)
    ahead: dict[int, _Piece] = {}
    _run(forward, frames, list(range(n)), given, ahead, lambda obj, t: True, tick)
    forward_seconds = time.perf_counter() - start
    ids = forward.object_ids
    first_mask = {obj: min(t for t, m in masks.items() if (m == obj).any()) for obj in ids
                  if any((m == obj).any() for m in masks.values())}
    starts = {obj: sorted({t for t, m in masks.items() if (m == obj).any()}
                          | {t for t, kind in forward.reid.tracks[obj].events if kind == "reidentified"})
              for obj in ids if obj in first_mask}

    behind: dict[int, _Piece] = {}
    span: dict[int, dict[int, tuple[int, int]]] = {}  # obj -> frame -> (previous start, next start)
    backward_frames = 0
    for s in sorted({t for points in starts.values() for t in points}):
        objects = [obj for obj, points in starts.items() if s in points and points.index(s) > 0]
        if not objects:
            continue
        previous = {obj: starts[obj][starts[obj].index(s) - 1] for obj in objects}
        labels_s = _labels(ahead, ids, s)
        present = tuple(int(i) for i in np.unique(labels_s) if i)
        if not set(objects) & set(present):
            continue
        stop = min(previous.values())
        order = list(range(s, stop, -1))
        cache = {t: frames[t] for t in sorted(order)}  # decoded forward once (cheap for videos)
        backward = InferenceCore(models, config)
        pieces: dict[int, _Piece] = {}
        _run(backward, cache, order, {s: (labels_s, present)}, pieces,
             lambda obj, t, previous=previous, s=s: obj in previous and previous[obj] < t < s, tick)
        backward_frames += len(order)
        for obj, piece in pieces.items():
            target = behind.setdefault(obj, _Piece())
            target.probs.update(piece.probs)
            target.similarity.update(piece.similarity)
            for t in piece.probs:
                span.setdefault(obj, {})[t] = (previous[obj], s)

    size = frames_size(frames)
    out = []
    for t in range(n):
        channels = []
        for obj in ids:
            f = ahead.get(obj, _Piece()).probs.get(t)
            b = behind.get(obj, _Piece()).probs.get(t)
            if b is None or f is None:
                channels.append(f if f is not None else np.zeros(size, np.uint8))
                continue
            lo, hi = span[obj][t]
            channels.append(_link(f, b, ahead[obj].similarity[t], behind[obj].similarity[t],
                                  (t - lo) / max(hi - lo, 1), agree_iou))
        out.append(_argmax_labels(channels, ids, size))
    events = {obj: list(forward.reid.tracks[obj].events) for obj in ids if obj in forward.reid.tracks}
    forward_labels = [_labels(ahead, ids, t) if ids else np.zeros(size, np.uint8) for t in range(n)]
    report = OfflineReport(starts, backward_frames, events, forward_labels, forward_seconds)
    return out, report


def frames_size(frames) -> tuple[int, int]:
    size = getattr(frames, "size", None)
    return tuple(size) if size is not None else tuple(frames[0].shape[:2])


def _link(f: np.ndarray, b: np.ndarray, sim_f: float, sim_b: float, towards_b: float, agree_iou: float) -> np.ndarray:
    """One object's two pieces on one frame -> one probability map (uint8)."""
    mf, mb = f >= 128, b >= 128
    if not mb.any():
        return f
    if not mf.any():
        return b
    iou = (mf & mb).sum() / max((mf | mb).sum(), 1)
    if iou >= agree_iou:
        return (f.astype(np.float32) * (1 - towards_b) + b.astype(np.float32) * towards_b + 0.5).astype(np.uint8)
    return b if sim_b > sim_f else f


def _labels(pieces: dict[int, _Piece], ids: tuple[int, ...], t: int) -> np.ndarray:
    size = next(iter(p.probs[t].shape for p in pieces.values() if t in p.probs))
    channels = [pieces[obj].probs[t] if obj in pieces and t in pieces[obj].probs else np.zeros(size, np.uint8)
                for obj in ids]
    return _argmax_labels(channels, ids, size)


def _argmax_labels(channels: list[np.ndarray], ids: tuple[int, ...], size) -> np.ndarray:
    """Object probability maps -> label map; background where no object reaches 0.5."""
    if not channels:
        return np.zeros(size, np.uint8)
    stack = np.stack(channels).astype(np.int16)  # (K, H, W)
    background = np.clip(255 - stack.sum(0), 0, 255)
    lut = np.array((0, *ids), dtype=np.uint8)
    return lut[np.concatenate([background[None], stack]).argmax(0)]
