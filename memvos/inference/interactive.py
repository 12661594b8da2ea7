"""Interactive segmentation: rounds of user input (strokes, clicks or a mask on any frame) and
propagation to the whole video, as in STM's interactive mode.

    session = InteractiveSession(frames)                 # (T, H, W, 3) array or a frame source
    session.interact(12, object_id=1, positive=strokes)  # the frame's new mask, at once
    session.propagate(progress=print)                    # spread the round to every frame
    session.interact(40, object_id=1, negative=strokes)  # correct a bad frame ...
    session.propagate()                                  # ... and update the others
    session.undo()                                       # back to before the last interaction
    session.redo()                                       # and forward again
    labels = session.masks()                             # (T, H, W) uint8, the user's ids

A round: the annotated frame t enters memory for good (frame + current mask + strokes), every
other frame is a query, propagation runs forward and backward from t. Frames between t and an
earlier round's annotated frame a blend the two rounds' results by temporal distance (the
weight of the new round falls to 0 at a), and propagation stops at a, so a correction never
damages frames the user already fixed. Memory per direction follows the streaming engine's
policy (annotated frames, the previous frame, every N-th, a cap), so RAM stays bounded; the
results are stored as 8-bit probabilities at the processing size.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from memvos.data.scribbles import click_disks, grabcut_prior
from memvos.errors import InputError
from memvos.inference.core import processing_size
from memvos.inference.memory import MemoryBank, MemoryPolicy
from memvos.model.base import MemoryEntry
from memvos.model.frozen_key import STROKE_CHANNELS
from memvos.model.modules import channel_argmax

PRIORS = ("network", "grabcut", "paint")
CLICK_MIN_SIDE = 256  # the interaction network sees small frames upscaled to this short side (best of 160-320 on small synthetic clips)
ZOOM_SIDE = 320  # a zoomed-in crop is resized to ZOOM_SIDE^2 pixels (the network trained on 320-pixel crops)
Progress = Callable[[int, int], None]
Cancel = Callable[[], bool] | threading.Event


@dataclass
class InteractiveConfig:
    """memory: the policy of each propagation pass; max_short_side: frames are processed
    downsized to this (None: full size); min_short_side, max_upscale: smaller frames are
    processed enlarged towards min_short_side, at most max_upscale times, as the propagation
    model's preset says (``session_config``; the interaction network still reads them at their
    own size); prior: how the annotated frame's mask is made from the strokes and clicks —
    'network' (the interaction network, ``memvos.model.interaction``: its output is the frame's
    mask, as in MiVOS), 'grabcut' (OpenCV's GrabCut seeded with the strokes and the current mask)
    or 'paint' (the current mask with the strokes painted in); the last two are refined by the
    memory network's read of the frame. interaction_weights: the interaction network's weights for
    corrections (default: the shipped ones); first_touch_weights: those for an object's first marks
    on a frame where it has no mask yet (default: the shipped first-touch network, trained longer
    on scribbles); mirror_clicks: it also reads the mirrored frame and marks, and the two are
    averaged; keep_near_marks: on a first touch, parts of the mask farther from the parts holding a
    positive mark than this fraction of their size are dropped (None: kept); local_corrections: a
    correction changes only the regions its marks touch (``confine_changes``); zoom_in: when the
    box around the marks and the mask they touch would be enlarged at least this many times to
    reach ZOOM_SIDE^2 pixels, the network runs again on that crop, enlarged (small
    objects; None: never)."""

    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    max_short_side: int | None = 480
    min_short_side: int | None = None
    max_upscale: float = 2.0
    prior: str = "network"
    grabcut_iterations: int = 3
    interaction_weights: str | None = None
    first_touch_weights: str | None = None
    mirror_clicks: bool = True
    keep_near_marks: float | None = 0.15
    local_corrections: bool = True
    zoom_in: float | None = 1.5
    undo_depth: int = 32  # interactions that can be undone (each keeps the masks it replaced)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, not {self.prior!r}")

    def processing_size(self, h: int, w: int) -> tuple[int, int]:
        """The size frames of (h, w) are processed at."""
        return processing_size(h, w, self.max_short_side, self.min_short_side, self.max_upscale)


def session_config(memvos_config, **overrides) -> InteractiveConfig:
    """Session settings for a propagation model: its memory policy and its processing-size rule
    (the fast model's enlarges 240p-479p frames to 480, as ``memvos segment`` does), then
    ``overrides``."""
    run = memvos_config.inference
    settings = {"memory": run.memory, "max_short_side": run.max_short_side,
                "min_short_side": run.min_short_side, "max_upscale": run.max_upscale}
    return InteractiveConfig(**{**settings, **overrides})


@dataclass
class _Annotation:
    """What the user gave on one frame, per object at processing size: strokes (the memory
    encoder sees them) and whole masks (enforced, but not shown to the encoder as strokes: a
    frame-wide "stroke" is nothing like what it was trained on)."""

    strokes: dict[int, np.ndarray] = field(default_factory=dict)  # id -> (2, h, w) bool: positive, negative
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # id -> (2, h, w) bool: inside, outside
    entry: MemoryEntry | None = None


@dataclass
class _State:
    """Everything a round changes; undo restores the previous one (dicts are copied shallowly:
    arrays are replaced, never modified in place, so snapshots are cheap)."""

    ids: tuple[int, ...] = ()
    probs: dict[int, tuple[tuple[int, ...], np.ndarray]] = field(default_factory=dict)  # frame -> (ids, (K+1,h,w) u8)
    annotations: dict[int, _Annotation] = field(default_factory=dict)  # frame -> annotation (memory: permanent)

    def copy(self) -> _State:
        return _State(self.ids, dict(self.probs), dict(self.annotations))


def load_interactive_model(source: str | Path | None = None, device: str = "cpu",
                           frame_size: tuple[int, int] | None = None, max_short_side: int | None = 480):
    """The model an interactive session propagates with: a checkpoint or preset, else the shipped
    model for a video of ``frame_size`` processed as a session does (``default_interactive_source``)."""
    from memvos.model.factory import default_interactive_source, load_model

    return load_model(source or default_interactive_source(frame_size, max_short_side), device)


def interactive_models(source: str | Path | None = None, device: str = "cpu", short_side: int | None = 480):
    """frames -> (model, config) for sessions on them, each model loaded once (the default
    depends on the processing size, so tiny frames get the stride-8 model); ``session_config``
    turns the config into the session's settings."""
    loaded: dict[str, tuple] = {}
    lock = threading.Lock()

    def for_frames(frames) -> tuple:
        from memvos.model.factory import default_interactive_source

        key = str(source or default_interactive_source(frames[0].shape[:2] if len(frames) else None, short_side))
        with lock:
            if key not in loaded:
                loaded[key] = load_interactive_model(key, device)
        return loaded[key]

    return for_frames


class InteractiveSession:
    """One video, rounds of user input; see the module docstring."""

    def __init__(self, frames, model=None, config: InteractiveConfig | None = None, memvos_config=None) -> None:
        """``model``: any engine model (default: ``load_interactive_model()``); models built with
        ``scribbles: true`` also get the strokes as memory-encoder inputs."""
        if model is None:
            own = tuple(frames[0].shape[:2]) if len(frames) else None
            if config is None or own is None:  # the model's preset then decides the processing size
                model, memvos_config = load_interactive_model(frame_size=own)
            else:  # the default model for the size the given config processes at
                from memvos.model.factory import default_model_source

                model, memvos_config = load_interactive_model(
                    default_model_source(config.processing_size(*own), enlarge=False))
        self.model = model
        self.config = config or (session_config(memvos_config) if memvos_config is not None else InteractiveConfig())
        self.frames = frames
        if len(frames) == 0:
            raise InputError(None, "the video has no frames")
        first = frames[0]
        self.height, self.width = first.shape[:2]
        self.size = self.config.processing_size(self.height, self.width)
        self.device = torch.device(self.config.device)
        self._state = _State()
        self._round: set[int] | None = None  # frames annotated in the open round
        self._undo: list[tuple[_State, set[int] | None]] = []  # (state, open round) before each change
        self._redo: list[tuple[_State, set[int] | None]] = []
        self._busy = threading.Lock()
        self._clickers: dict = {}  # ClickToMask by role ('first', 'correct'), loaded on first use
        self._latest: tuple[int, np.ndarray, np.ndarray] | None = None  # (object, positive, negative) just given
        self._click_features: tuple[int, tuple[Tensor, ...]] | None = None  # (frame, backbone features), shared

    # ---- what the user sees -----------------------------------------------------------------
    @property
    def object_ids(self) -> tuple[int, ...]:
        return self._state.ids

    @property
    def annotated_frames(self) -> list[int]:
        return sorted(self._state.annotations)

    def __len__(self) -> int:
        return len(self.frames)

    def probabilities(self, index: int) -> Tensor:
        """(K+1, h, w) float probabilities of frame ``index`` at processing size, channels in
        ``object_ids`` order (frames never segmented: background)."""
        return self._probs(index, self._state.ids)

    def mask(self, index: int) -> np.ndarray:
        """(H, W) uint8 labels of one frame, full size."""
        self._check_frame(index)
        probs = self.probabilities(index)
        if probs.shape[-2:] != (self.height, self.width):
            probs = F.interpolate(probs[None], size=(self.height, self.width), mode="bilinear", align_corners=False)[0]
        lut = np.array((0, *self._state.ids), dtype=np.uint8)
        return lut[channel_argmax(probs).numpy()]

    def round_strokes(self, index: int) -> np.ndarray | None:
        """(2, H, W) bool positive and negative marks (strokes, click disks) on frame ``index``
        while its round is open, full size, for the page to keep them drawn; None otherwise."""
        self._check_frame(index)
        annotation = self._state.annotations.get(index)
        if self._round is None or index not in self._round or annotation is None or not annotation.strokes:
            return None
        marks = np.any(np.stack(list(annotation.strokes.values())), axis=0)  # (2, h, w)
        return np.stack([_resize_bool(m, (self.height, self.width)) for m in marks])

    def masks(self) -> np.ndarray:
        """(T, H, W) uint8 labels of every frame, the user's ids."""
        return np.stack([self.mask(i) for i in range(len(self.frames))])

    # ---- rounds -----------------------------------------------------------------------------
    @torch.inference_mode()
    def interact(self, frame: int, object_id: int, positive: np.ndarray | None = None,
                 negative: np.ndarray | None = None, clicks: Sequence[Sequence[float]] | None = None,
                 mask: np.ndarray | None = None) -> np.ndarray:
        """Annotate ``object_id`` on ``frame``: strokes (bool (H, W) maps), clicks ((x, y) points,
        or (x, y, positive) with positive False for a negative click; drawn as small disks) or a
        full bool mask. Returns the frame's new (H, W) labels; ``propagate()`` spreads the round."""
        self._check_frame(frame)
        if not 1 <= int(object_id) <= 254:
            raise InputError(None, f"object id {object_id} out of range 1..254")
        if positive is None and negative is None and clicks is None and mask is None:
            raise InputError(None, "interact needs strokes, clicks or a mask")
        pos, neg = self._user_strokes(positive, negative, clicks)
        self._latest = (int(object_id), pos, neg)  # what this interaction adds (a negative-only one is local)
        inside = None if mask is None else _resize_mask(self._check_map(mask, "mask"), self.size)
        self._open_round()  # only once the input is known to be good
        state = self._state
        if object_id not in state.ids:
            state.ids = state.ids + (int(object_id),)
        annotation = state.annotations.get(frame)
        # earlier input on this frame still holds
        annotation = _Annotation(dict(annotation.strokes), dict(annotation.masks)) if annotation else _Annotation()
        if inside is not None:
            annotation.masks[object_id] = np.stack([inside, ~inside])
            annotation.strokes.pop(object_id, None)  # a whole mask supersedes earlier strokes
        else:
            neg = neg & ~pos  # a pixel both ways at once: positive
            old = annotation.strokes.get(object_id)
            if old is not None:  # the newer stroke wins where it crosses an older one
                pos, neg = (old[0] & ~neg) | pos, (old[1] & ~pos) | neg
            annotation.strokes[object_id] = np.stack([pos, neg])
            given = annotation.masks.get(object_id)
            if given is not None:  # strokes drawn over an uploaded mask correct it
                annotation.masks[object_id] = np.stack([(given[0] & ~neg) | pos, (given[1] & ~pos) | neg])
        self._round.add(frame)
        self._segment_annotated(frame, annotation, given_mask=inside is not None)
        return self.mask(frame)

    @torch.inference_mode()
    def propagate(self, progress: Progress | None = None, cancel: Cancel | None = None) -> bool:
        """Spread the open round from its annotated frame(s) to the video, forward and backward.
        ``progress(done, total)`` after each frame; ``cancel()`` (or a set ``threading.Event``)
        stops between frames: the frames done so far keep their new masks, the round stays open
        (``undo`` reverts it all). Returns False when cancelled."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("a propagation is already running in this session")
        try:
            if not self._round:
                return True
            sources = sorted(self._round)
            plan = [(t, step, stop) for t in sources for step, stop in self._directions(t)]
            total = sum(abs(stop - t) - 1 for t, _, stop in plan)
            done = 0
            for t, step, stop in plan:
                for _ in self._propagate_from(t, step, stop):
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    if _cancelled(cancel):
                        return False
            self._round = None
            return True
        finally:
            self._busy.release()

    def undo(self) -> bool:
        """Revert the last interaction (a stroke, a click, a mask, a removed object), with the
        propagation that followed it; False when there is nothing to undo."""
        if not self._undo:
            return False
        self._redo.append(self._snapshot())
        self._state, self._round = self._undo.pop()
        return True

    def redo(self) -> bool:
        """Apply again what ``undo`` reverted (until a new interaction); False when nothing is left."""
        if not self._redo:
            return False
        self._undo.append(self._snapshot())
        self._state, self._round = self._redo.pop()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def remove_object(self, object_id: int) -> None:
        """Stop segmenting ``object_id`` (its pixels become background); undo brings it back."""
        if object_id not in self._state.ids:
            raise InputError(None, f"object {object_id} is not in this session (objects: {list(self._state.ids)})")
        self._push_undo()
        self._round = None
        self._state.ids = tuple(i for i in self._state.ids if i != object_id)

    # ---- the annotated frame ------------------------------------------------------------------
    def _segment_annotated(self, frame: int, annotation: _Annotation, given_mask: bool) -> None:
        """The annotated frame's new probabilities: a prior from the strokes, the network's read of
        memory (earlier rounds' annotated frames + this one, memorised with the prior and the
        strokes), strokes enforced; then the frame is memorised again with the result."""
        ids = self._state.ids
        rgb = self._rgb(frame)
        current = self._probs(frame, ids)
        strokes = _stroke_tensor(annotation.strokes, ids, self.size)  # (K, 2, h, w): what the encoder sees
        certain = _stroke_tensor({**annotation.strokes, **annotation.masks}, ids, self.size)  # what is enforced
        query = self.model.encode_query(rgb)
        if given_mask:  # a whole mask: nothing to guess for that object
            probs = _enforce(current, certain)
        elif self.config.prior == "network":  # the interaction network's mask is the frame's
            probs = _enforce(self._prior(frame, current, annotation, ids), certain)
        else:
            prior = _enforce(self._prior(frame, current, annotation, ids), certain)
            entry = self.model.memorize(rgb, query, prior, ids, **self._stroke_arg(strokes))
            memory = [a.entry for f, a in self._state.annotations.items() if f != frame and a.entry is not None]
            probs = self.model.segment(query, memory + [entry], ids)
            probs = _enforce(probs, certain)
        annotation.entry = self.model.memorize(rgb, query, probs, ids, **self._stroke_arg(strokes))
        self._state.annotations[frame] = annotation
        self._store(frame, probs, ids)

    def _prior(self, frame: int, current: Tensor, annotation: _Annotation, ids: tuple[int, ...]) -> Tensor:
        """(K+1, h, w): the current probabilities with each annotated object's channel replaced
        by its guess from the strokes (GrabCut or painting), then renormalised."""
        objects = current[1:].clone()
        image = None
        for obj, strokes in annotation.strokes.items():
            if obj not in ids:  # removed since
                continue
            k = ids.index(obj)
            positive = torch.from_numpy(strokes[0])
            negative = torch.from_numpy(strokes[1])
            for other, s in annotation.strokes.items():  # another object's positive strokes are not this one
                if other != obj:
                    negative = negative | torch.from_numpy(s[0])
            guess = objects[k]
            if self.config.prior == "network":
                first_touch = is_first_touch(guess)
                proposed = self._click_network(frame, positive.numpy(), negative.numpy(), guess.numpy(), first_touch)
                latest = self._latest
                if latest is not None and latest[0] == obj and latest[2].any() and not latest[1].any():
                    proposed = torch.from_numpy(confine_removal(guess.numpy(), proposed.numpy(), latest[2]))
                elif latest is not None and latest[0] == obj and not first_touch and self.config.local_corrections:
                    proposed = torch.from_numpy(confine_changes(guess.numpy(), proposed.numpy(),
                                                                latest[1] | latest[2]))
                if first_touch and self.config.keep_near_marks is not None:
                    proposed = torch.from_numpy(keep_near_marks(proposed.numpy(), positive.numpy(),
                                                                self.config.keep_near_marks))
                guess = proposed
            elif self.config.prior == "grabcut" and bool(positive.any()):
                image = self._bgr(frame) if image is None else image
                guess = torch.from_numpy(grabcut_prior(image, guess.numpy(), positive.numpy(), negative.numpy(),
                                                       self.config.grabcut_iterations))
            guess = torch.where(positive, 1.0, torch.where(negative, 0.0, guess))
            objects[k] = guess
            for j in range(len(ids)):  # the others give way where this object is now certain
                if j != k:
                    objects[j] = torch.where(guess > 0.5, objects[j] * (1 - guess), objects[j])
        background = (1 - objects.sum(0, keepdim=True)).clamp(min=0)
        return _normalise(torch.cat([background, objects]))

    def _clicker(self, first_touch: bool):
        """The interaction network for a first touch or for a correction, loaded once."""
        from memvos.model.interaction import (
            load_click_to_mask,
            shipped_first_touch_weights,
            shipped_interaction_weights,
        )

        role = "first" if first_touch else "correct"
        if role not in self._clickers:
            path = (self.config.first_touch_weights or shipped_first_touch_weights()) if first_touch \
                else (self.config.interaction_weights or shipped_interaction_weights())
            clicker = load_click_to_mask(path, self.config.device)
            for other in self._clickers.values():  # a frame's features serve both: one backbone
                if other.net.config.backbone != clicker.net.config.backbone:
                    raise InputError(path, f"its backbone is {clicker.net.config.backbone}, the other interaction "
                                           f"network's {other.net.config.backbone}: they must be the same")
                clicker.backbone = other.backbone
            self._clickers[role] = clicker
        return self._clickers[role]

    def _click_network(self, frame: int, positive: np.ndarray, negative: np.ndarray, current: np.ndarray,
                       first_touch: bool = False) -> Tensor:
        """The interaction network's (h, w) probability of one object on ``frame``, (h, w) the
        processing size. The network reads the frame at ``_click_size`` (it trained on 320-pixel
        crops of 384p images). Both networks share the frozen backbone, so the frame's features
        are computed once."""
        clicker = self._clicker(first_touch)
        work = self._click_size()
        if self._click_features is None or self._click_features[0] != frame:
            self._click_features = (frame, clicker.features(self._rgb(frame, work), mirror=self.config.mirror_clicks))
        prob = _predict_at(clicker, self._click_features[1], positive, negative, current, work)
        if self.config.zoom_in is not None:
            prob = self._zoom_in(clicker, frame, prob, positive, negative, current)
        return prob

    def _click_size(self) -> tuple[int, int]:
        """(h, w) the interaction network reads a frame at: its own size, or the processing size
        if smaller, with the short side at least ``CLICK_MIN_SIDE``. Frames processed enlarged are
        not read enlarged: on schoolgirls (240p) read at 480, the first masks fell from J 0.67 to
        0.45 (docs/interactive.md)."""
        h, w = self.size
        target = max(CLICK_MIN_SIDE, min(self.height, self.width, h, w))
        factor = target / min(h, w)
        return round(h * factor), round(w * factor)

    def _zoom_in(self, clicker, frame: int, prob: Tensor, positive: np.ndarray, negative: np.ndarray,
                 current: np.ndarray) -> Tensor:
        """Run the network again on a crop around the positive marks (else the negative ones) and the
        mask parts they touch, enlarged to ``ZOOM_SIDE``^2 pixels, when that box is small: the network
        learned on objects that fill a fair share of a 320-pixel crop, and misses a 150-pixel one in a
        480p frame. (h, w) in and out."""
        anchor = positive if positive.any() else negative  # far negative marks must not widen the box
        scale = min(self.size) / min(self._click_size())  # processing pixels per pixel the network reads
        box = zoom_box(anchor | parts_touching(prob.numpy() > 0.5, anchor), (scale * ZOOM_SIDE / self.config.zoom_in) ** 2)
        if box is None:
            return prob
        ys, xs = box
        crop_h, crop_w = ys.stop - ys.start, xs.stop - xs.start
        factor = ZOOM_SIDE / math.sqrt(crop_h * crop_w)
        size = (round(crop_h * factor), round(crop_w * factor))
        rgb = F.interpolate(self._rgb(frame)[..., ys, xs], size=size, mode="bilinear", align_corners=False)
        features = clicker.features(rgb, mirror=self.config.mirror_clicks)
        out = prob.clone()
        out[ys, xs] = _predict_at(clicker, features, positive[ys, xs], negative[ys, xs],
                                  np.ascontiguousarray(current[ys, xs]), size)
        return out

    # ---- propagation --------------------------------------------------------------------------
    def _directions(self, t: int) -> list[tuple[int, int]]:
        """(step, stop) for forward and backward: stop at the nearest other annotated frame
        (exclusive), or one past the video's end."""
        after = [a for a in self._state.annotations if a > t]
        before = [a for a in self._state.annotations if a < t]
        return [(1, min(after, default=len(self.frames))), (-1, max(before, default=-1))]

    def _propagate_from(self, t: int, step: int, stop: int):
        """Segment frames t+step .. stop-step in order, yielding after each one."""
        ids = self._state.ids
        bank = MemoryBank(self.config.memory, getattr(self.model, "coarsen_entry", None))
        for f in sorted(self._state.annotations):
            entry = self._state.annotations[f].entry
            if entry is not None:
                bank.add(f, entry, permanent=True)
        fixed_at_stop = 0 <= stop < len(self.frames)
        for f in range(t + step, stop, step):
            rgb = self._rgb(f)
            query = self.model.encode_query(rgb)
            new = self.model.segment(query, bank.entries(), ids)
            if fixed_at_stop and f in self._state.probs:
                w = abs(stop - f) / (abs(stop - f) + abs(f - t))  # 1 next to t, 0 at the earlier annotation
                new = _normalise(w * new + (1 - w) * self._probs(f, ids))
            bank.add(f, self.model.memorize(rgb, query, new, ids))
            self._store(f, new, ids)
            yield f

    # ---- helpers --------------------------------------------------------------------------------
    def _open_round(self) -> None:
        """Before an interaction: remember the state for undo; open a round if none is open."""
        self._push_undo()
        if self._round is None:
            self._round = set()

    def _snapshot(self) -> tuple[_State, set[int] | None]:
        return self._state.copy(), None if self._round is None else set(self._round)

    def _push_undo(self) -> None:
        """Keep the current state for undo and go on with a copy (arrays are replaced, never
        modified in place, so shallow copies are enough); a new change clears redo."""
        depth = self.config.undo_depth
        self._undo = self._undo[-(depth - 1):] if depth > 1 else []
        self._undo.append((self._state, None if self._round is None else set(self._round)))
        self._state = self._state.copy()
        self._redo.clear()

    def _check_frame(self, index: int) -> None:
        if not 0 <= index < len(self.frames):
            raise InputError(None, f"frame {index} out of range: the video has {len(self.frames)} frames")

    def _check_map(self, array: np.ndarray, what: str) -> np.ndarray:
        array = np.asarray(array)
        if array.shape != (self.height, self.width):
            raise InputError(None, f"{what} is {array.shape[1] if array.ndim > 1 else '?'}x{array.shape[0]}, "
                                   f"the video is {self.width}x{self.height}")
        return array.astype(bool)

    def _user_strokes(self, positive, negative, clicks) -> tuple[np.ndarray, np.ndarray]:
        """Full-size user input -> (positive, negative) bool maps at processing size."""
        shape = (self.height, self.width)
        pos = self._check_map(positive, "positive strokes") if positive is not None else np.zeros(shape, bool)
        neg = self._check_map(negative, "negative strokes") if negative is not None else np.zeros(shape, bool)
        if clicks:
            points = [(float(c[0]), float(c[1]), bool(c[2]) if len(c) > 2 else True) for c in clicks]
            try:
                good = [(x, y) for x, y, p in points if p]
                bad = [(x, y) for x, y, p in points if not p]
                pos = pos | (click_disks(good, shape) if good else False)
                neg = neg | (click_disks(bad, shape) if bad else False)
            except ValueError as err:
                raise InputError(None, str(err)) from None
        return _resize_bool(pos, self.size), _resize_bool(neg, self.size)

    def _rgb(self, index: int, size: tuple[int, int] | None = None) -> Tensor:
        """(1, 3, h, w) float frame at ``size`` (default: the processing size)."""
        size = size or self.size
        frame = np.ascontiguousarray(self.frames[index])
        if frame.shape[:2] != (self.height, self.width):
            raise InputError(None, f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                   f"frame 0 is {self.width}x{self.height}")
        x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None].float() / 255
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x

    def _bgr(self, index: int) -> np.ndarray:
        frame = np.ascontiguousarray(self.frames[index])
        if frame.shape[:2] != self.size:
            frame = cv2.resize(frame, self.size[::-1], interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)

    def _probs(self, index: int, ids: tuple[int, ...]) -> Tensor:
        """Stored probabilities of a frame for ``ids`` (objects it did not know: 0; removed ones:
        their mass goes to the background)."""
        out = torch.zeros(len(ids) + 1, *self.size)
        stored = self._state.probs.get(index)
        if stored is None:
            out[0] = 1
            return out
        known, array = stored
        values = torch.from_numpy(array).float() / 255
        for k, obj in enumerate(ids):
            if obj in known:
                out[k + 1] = values[known.index(obj) + 1]
        out[0] = (1 - out[1:].sum(0)).clamp(min=0)
        return _normalise(out)

    def _store(self, index: int, probs: Tensor, ids: tuple[int, ...]) -> None:
        array = (probs.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        self._state.probs[index] = (ids, array)

    def _stroke_arg(self, strokes: Tensor) -> dict:
        """Only models with stroke inputs take them (the semi-supervised model is driven too)."""
        return {"strokes": strokes} if getattr(getattr(self.model, "config", None), "scribbles", False) else {}


def parts_touching(region: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """The 8-connected parts of bool ``region`` that hold a pixel of bool ``marks`` (both (h, w))."""
    _, parts = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    touched = np.unique(parts[marks & region])
    return np.isin(parts, touched[touched > 0])


def _predict_at(clicker, features, positive: np.ndarray, negative: np.ndarray, current: np.ndarray,
                size: tuple[int, int]) -> Tensor:
    """The network's probability from features of an image of ``size`` (h, w), with the marks and
    the current mask given at their own size, which the result comes back at."""
    own = positive.shape
    if size != own:
        positive, negative = _resize_bool(positive, size), _resize_bool(negative, size)
        current = cv2.resize(current, size[::-1], interpolation=cv2.INTER_LINEAR)
    prob = clicker.predict(features, positive, negative, current).cpu()
    if size != own:
        prob = F.interpolate(prob[None, None], size=own, mode="bilinear", align_corners=False)[0, 0]
    return prob


def zoom_box(region: np.ndarray, max_area: float, margin: float = 0.4,
             min_side: int = 48) -> tuple[slice, slice] | None:
    """(rows, cols) slices of a box around bool ``region`` (h, w), grown by ``margin`` x its size on
    each side and to at least ``min_side`` pixels, inside the frame; None when the region is empty
    or the box holds more than ``max_area`` pixels (large enough already: nothing to gain)."""
    h, w = region.shape
    rows, cols = np.nonzero(region)
    if rows.size == 0:
        return None
    spans = []
    for lo, hi, limit in ((rows.min(), rows.max() + 1, h), (cols.min(), cols.max() + 1, w)):
        grow = max(margin * (hi - lo), (min_side - (hi - lo)) / 2, 0)
        start, stop = max(0, int(lo - grow)), min(limit, int(np.ceil(hi + grow)))
        spans.append(slice(start, stop))
    if (spans[0].stop - spans[0].start) * (spans[1].stop - spans[1].start) > max_area:
        return None
    return spans[0], spans[1]


def is_first_touch(current: np.ndarray | Tensor) -> bool:
    """An object's marks are a first touch on a frame where its probability is nowhere above 0.5."""
    return not bool((current > 0.5).any())


def confine_removal(current: np.ndarray, proposed: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """A negative-only interaction removes what it touches and nothing else: of the pixels the
    network would drop from the object, only the connected parts that touch the new negative
    marks go; everywhere else the object keeps its current probability, and nothing is added.
    All (h, w): probabilities ``current`` and ``proposed``, bool ``negative``."""
    removed = parts_touching((current > 0.5) & (proposed <= 0.5), negative)
    return np.where(removed | negative, np.minimum(proposed, current), current).astype(np.float32)


def confine_changes(current: np.ndarray, proposed: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """A correction changes what its marks touch and nothing else: of the connected regions where
    the network's mask differs from the current one, only those touching the new marks (positive
    or negative) take the network's values; everywhere else the object keeps its current
    probability. All (h, w): probabilities ``current`` and ``proposed``, bool ``marks``."""
    changed = (current > 0.5) != (proposed > 0.5)
    accepted = parts_touching(changed, marks) | marks | ~changed
    return np.where(accepted, proposed, current).astype(np.float32)


def keep_near_marks(proposed: np.ndarray, positive: np.ndarray, reach: float) -> np.ndarray:
    """A first touch spills onto look-alikes elsewhere in the frame (another flamingo, a goal
    net): keep the connected parts of the mask that hold a positive mark, and the parts within
    ``reach`` x the square root of their area of them (an occluded or thin object comes in pieces);
    drop the rest. (h, w) probabilities ``proposed``, bool ``positive``; no positive mark inside
    the mask: unchanged."""
    inside = proposed > 0.5
    core = parts_touching(inside, positive)
    if not core.any():
        return proposed
    radius = max(3, int(reach * np.sqrt(core.sum())))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near = cv2.dilate(core.astype(np.uint8), disk) > 0
    dropped = inside & ~parts_touching(inside, near)
    return np.where(dropped, 0.0, proposed).astype(np.float32)


def _resize_bool(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downsizing keeps thin strokes: a processing pixel is set if any full-size pixel under it is."""
    if mask.shape == size:
        return mask.copy()
    resized = cv2.resize(mask.astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA)
    return resized > 0


def _stroke_tensor(maps: dict[int, np.ndarray], ids: tuple[int, ...], size: tuple[int, int]) -> Tensor:
    """(K, 2, h, w) float positive/negative maps of a frame for ``ids``; another object's positive
    pixels count as negative ones (a stroke says which object a pixel belongs to)."""
    out = torch.zeros(len(ids), STROKE_CHANNELS, *size)
    for obj, pair in maps.items():
        if obj not in ids:
            continue
        k = ids.index(obj)
        out[k] = torch.maximum(out[k], torch.from_numpy(pair).float())
        for j in range(len(ids)):
            if j != k:
                out[j, 1] = torch.maximum(out[j, 1], torch.from_numpy(pair[0]).float())
    out[:, 1] *= 1 - out[:, 0]
    return out


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A whole mask to processing size: a pixel is inside if most of what it covers is."""
    if mask.shape == size:
        return mask.copy()
    return cv2.resize(mask.astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA) >= 0.5


def _enforce(probs: Tensor, strokes: Tensor) -> Tensor:
    """(K+1, h, w) probabilities with every stroke obeyed: positive pixels belong to their object,
    negative ones lose that object."""
    out = probs.clone()
    for k in range(strokes.shape[0]):
        out[k + 1] = torch.where(strokes[k, 1] > 0.5, 0.0, out[k + 1])
    out = _normalise(out)
    for k in range(strokes.shape[0]):
        positive = strokes[k, 0] > 0.5
        one = torch.zeros_like(out[:, 0, 0])
        one[k + 1] = 1
        out = torch.where(positive[None], one[:, None, None], out)
    return out


def _normalise(probs: Tensor) -> Tensor:
    total = probs.sum(0, keepdim=True)
    fallback = torch.zeros_like(probs)
    fallback[0] = 1
    return torch.where(total > 1e-6, probs / total.clamp(min=1e-6), fallback)


def _cancelled(cancel: Cancel | None) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())
