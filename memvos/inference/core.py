"""The streaming inference engine: feed frames one by one, give masks on any frame.

    core = InferenceCore(model, InferenceConfig())
    for t, frame in enumerate(frames):
        probs = core.step(frame, mask=masks.get(t))   # (K+1, H, W), background first
        labels = core.labels(probs)                   # (H, W) uint8 with the user's ids

A mask may come on any frame. Ids it holds that are new are added (the YouTube-VOS
case); objects it does not mention keep being tracked. Test-time augmentation (several
scales, horizontal flip) runs one branch per variant, each with its own memory, and
averages probabilities; several models (an ensemble) average logits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from memvos.data.masks import object_ids as ids_in_mask
from memvos.inference.memory import MemoryBank, MemoryPolicy
from memvos.inference.objects import ObjectManager, one_hot
from memvos.inference.reid import RegionEmbedder, ReidConfig, ReIdentifier, reid_inputs
from memvos.model.base import SegmentationModel
from memvos.model.instance_head import ObjectFeatureStats
from memvos.model.precision import PRECISIONS

EPS = 1e-7
log = logging.getLogger(__name__)


@dataclass
class InferenceConfig:
    """How to run: memory policy, processing scales, flip.

    scales: short sides in pixels, one branch each (test-time multi-scale); None = the input's
    own size, but no larger than ``max_short_side`` (large videos are processed downsized) and,
    with ``min_short_side``, no smaller than that, enlarged at most ``max_upscale`` times (small
    videos are processed enlarged: a stride-16 network then still sees their objects in enough
    cells; docs/validation.md). min_object_area: when the first mask holds an object smaller than
    this many pixels at that size, the video is processed larger instead, so that the object
    reaches it, up to ``max_short_side_small`` and never above ``max_upscale_small`` times the
    frame's own size (small objects at 1080p vanish at 480p, small people in a 240p crowd at 480p;
    docs/segment.md).
    """

    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    scales: tuple[int | None, ...] = (None,)
    flip: bool = False
    max_short_side: int | None = 480
    min_short_side: int | None = None
    max_upscale: float = 2.0
    min_object_area: int | None = None
    max_short_side_small: int = 1080
    max_upscale_small: float = 1.0
    device: str = "cpu"
    reid: ReidConfig | None = None  # re-identify lost objects (None: off)
    precision: str = "auto"  # auto | float32 | bfloat16: applied when a model is loaded (memvos.model.precision)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def processing_size(h: int, w: int, max_short_side: int | None, min_short_side: int | None = None,
                    max_upscale: float = 2.0) -> tuple[int, int]:
    """(h, w) downsized so the short side is at most ``max_short_side``, or enlarged towards
    ``min_short_side`` by at most ``max_upscale`` times (None: no bound on that side)."""
    short = min(h, w)
    if max_short_side is not None and short > max_short_side:
        factor = max_short_side / short
    elif min_short_side is not None and short < min_short_side:
        factor = min(min_short_side / short, max_upscale)
    else:
        return h, w
    return max(round(h * factor), 1), max(round(w * factor), 1)


def smallest_object_area(mask: np.ndarray) -> int | None:
    """Pixels of the smallest object of a label map (0 background, 255 void), None without any."""
    counts = np.bincount(np.asarray(mask, np.uint8).ravel(), minlength=256)[1:255]
    present = counts[counts > 0]
    return int(present.min()) if present.size else None


def short_side_for_small_objects(area: int, own_short_side: int, short_side: int, min_area: int,
                                 max_short_side: int, max_upscale: float = 1.0) -> int:
    """The processing short side at which an object of ``area`` pixels (at the frame's size, whose
    short side is ``own_short_side``) covers ``min_area`` pixels, if that is above ``short_side``:
    at most ``max_short_side`` and ``max_upscale`` times the frame's own short side."""
    needed = own_short_side * math.sqrt(min_area / area)
    return max(short_side, min(round(needed), max_short_side, round(own_short_side * max_upscale)))


class _Branch:
    """One model at one scale, flipped or not, with a memory of its own."""

    def __init__(self, model: SegmentationModel, scale: int | None, flip: bool, policy: MemoryPolicy,
                 bounds: tuple[int | None, int | None, float] = (None, None, 2.0)) -> None:
        self.model, self.scale, self.flip = model, scale, flip
        self.bounds = bounds  # (max_short_side, min_short_side, max_upscale) of a None scale
        self.memory = MemoryBank(policy, getattr(model, "coarsen_entry", None))
        # Instance-aware head (issue 7): running O_G / O_{t-1} per object, for models that use them.
        self.instance = ObjectFeatureStats() if getattr(model, "uses_instance_stats", False) else None
        self.segment_options = {} if self.instance is None else {"instance": self.instance}

    def size_for(self, h: int, w: int) -> tuple[int, int]:
        if self.scale is None:
            return processing_size(h, w, *self.bounds)
        factor = self.scale / min(h, w)
        return max(round(h * factor), 1), max(round(w * factor), 1)

    def to_branch(self, image: Tensor) -> Tensor:
        """(C, H, W) or (1, C, H, W) at full size -> this branch's size and orientation. A uint8
        frame (0-255) comes back as floats in [0, 1]; shrunk on the CPU, it is resized as uint8
        first (PyTorch's fast path for images: 1080p to 480p in 5 ms instead of 29, within 1/255)."""
        squeeze = image.dim() == 3
        x = image[None] if squeeze else image
        size = self.size_for(*x.shape[-2:])
        if size != tuple(x.shape[-2:]):
            shrinks = size[0] < x.shape[-2] and size[1] < x.shape[-1]
            if x.dtype == torch.uint8 and not (shrinks and x.device.type == "cpu"):
                x = x.mul(1 / 255)  # enlarged (or off the CPU): resized as floats
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        if x.dtype == torch.uint8:
            x = x.mul(1 / 255)
        if self.flip:
            x = x.flip(-1)
        return x[0] if squeeze else x

    def from_branch(self, probs: Tensor, size: tuple[int, int]) -> Tensor:
        """(K+1, h, w) probabilities of this branch -> full size and orientation."""
        if self.flip:
            probs = probs.flip(-1)
        if tuple(probs.shape[-2:]) != size:
            probs = F.interpolate(probs[None], size=size, mode="bilinear", align_corners=False)[0]
        return probs


class InferenceCore:
    """Stateful semi-supervised segmentation of one video; see the module docstring."""

    def __init__(self, models: SegmentationModel | list[SegmentationModel], config: InferenceConfig | None = None):
        self.config = config or InferenceConfig()
        models = models if isinstance(models, list) else [models]
        flips = (False, True) if self.config.flip else (False,)
        cfg = self.config
        bounds = (cfg.max_short_side, cfg.min_short_side, cfg.max_upscale)
        self.branches = [[_Branch(m, s, f, cfg.memory, bounds) for s in cfg.scales for f in flips] for m in models]
        self.objects = ObjectManager()
        self.frame_index = 0
        self.device = torch.device(self.config.device)
        self.reid = ReIdentifier(RegionEmbedder.for_model(models[0]), cfg.reid) if cfg.reid is not None else None

    @property
    def object_ids(self) -> tuple[int, ...]:
        return self.objects.ids

    def labels(self, probs: Tensor) -> np.ndarray:
        return self.objects.labels(probs)

    def remove_object(self, obj: int) -> None:
        """Stop tracking ``obj``; its memory is ignored from now on."""
        self.objects.remove(obj)
        if self.reid is not None:
            self.reid.remove(obj)

    @torch.inference_mode()
    def step(self, frame: np.ndarray, mask: np.ndarray | None = None,
             object_ids: tuple[int, ...] | list[int] | None = None) -> Tensor:
        """Segment one (H, W, 3) uint8 RGB frame; ``mask`` (H, W) annotates some objects on it.

        ``object_ids`` says which ids the mask annotates (default: the ids present in it);
        an annotated id absent from the mask is marked absent on this frame.
        Returns (K+1, H, W) probabilities: background, then ``self.object_ids``.
        """
        h, w = frame.shape[:2]
        if mask is not None and not self.objects.ids:
            self._fit_small_objects(mask)
        array = frame if frame.flags.writeable and frame.flags.c_contiguous else np.array(frame)
        rgb = torch.from_numpy(array).to(self.device).permute(2, 0, 1)[None]  # uint8: each branch converts its own size
        inputs = [[b.to_branch(rgb) for b in group] for group in self.branches]
        queries = [[b.model.encode_query(x) for b, x in zip(group, xs)] for group, xs in zip(self.branches, inputs)]
        probs = self._predict(queries, (h, w))
        annotated = mask is not None
        if annotated:
            if mask.shape != (h, w):
                raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, frame is {w}x{h}")
            given = tuple(object_ids) if object_ids is not None else ids_in_mask(mask)
            new = self.objects.add(given)
            if new:
                probs = torch.cat([probs, probs.new_zeros(len(new), h, w)])
            probs = self._merge(probs, mask, given)
        reseeded: tuple[int, ...] = ()
        if self.reid is not None and self.objects.ids:
            probs, reseeded = self._reidentify(queries, rgb, probs, given if annotated else ())
        if self.objects.ids:
            for group, xs, qs in zip(self.branches, inputs, queries):
                for branch, x, q in zip(group, xs, qs):
                    entry = branch.model.memorize(x, q, branch.to_branch(probs), self.objects.ids)
                    branch.memory.add(self.frame_index, entry, permanent=annotated or bool(reseeded))
                    if branch.instance is not None:
                        branch.instance.update(entry)
        self.frame_index += 1
        return probs

    def _fit_small_objects(self, mask: np.ndarray) -> None:
        """Before anything is memorised: process larger if the first mask's smallest object
        would cover fewer than ``min_object_area`` pixels (``short_side_for_small_objects``)."""
        cfg = self.config
        area = None if cfg.min_object_area is None else smallest_object_area(mask)
        if area is None:
            return
        own = min(mask.shape[:2])
        for branch in (b for group in self.branches for b in group if b.scale is None):
            base = min(branch.size_for(*mask.shape[:2]))
            side = short_side_for_small_objects(area, own, base, cfg.min_object_area,
                                                cfg.max_short_side_small, cfg.max_upscale_small)
            if side > base:
                branch.bounds = (side, side, max(1.0, side / own))  # exactly `side`, down- or upsized
                # coarse long-term memory would halve what the enlarging gained: full resolution
                branch.memory.policy = dataclasses.replace(branch.memory.policy, coarse=1)
                log.info("small objects (the smallest: %d pixels): processing at %dp, not %dp", area, side, base)

    def _reidentify(self, queries, rgb: Tensor, probs: Tensor, given: tuple[int, ...]) -> tuple[Tensor, tuple[int, ...]]:
        """Re-id on the first branch's features: annotated objects give templates, the others
        are checked (and, when lost, searched for with a read from permanent memory alone)."""
        branch, query = self.branches[0][0], queries[0][0]
        features = reid_inputs(branch.model, query, branch.to_branch(rgb))
        if branch.flip:
            features = features.flip(-1)
        ids, size = self.objects.ids, tuple(probs.shape[-2:])
        if given:
            self.reid.annotate(self.frame_index, features, probs, ids, given)

        def template_read() -> Tensor:
            entries = branch.memory.permanent_entries()
            return branch.from_branch(branch.model.segment(query, entries, ids, **branch.segment_options), size)

        probs, reseeded = self.reid.update(self.frame_index, features, probs, ids, skip=given,
                                           template_read=template_read)
        return probs, reseeded

    def _predict(self, queries, size: tuple[int, int]) -> Tensor:
        """Average of the branches' predictions, or background everywhere before any object."""
        ids = self.objects.ids
        if not ids or not len(self.branches[0][0].memory):
            out = torch.zeros(len(ids) + 1, *size, device=self.device)
            out[0] = 1
            return out
        per_model = []
        for group, qs in zip(self.branches, queries):
            p = [b.from_branch(b.model.segment(q, b.memory.entries(), ids, **b.segment_options), size)
                 for b, q in zip(group, qs)]
            per_model.append(p[0] if len(p) == 1 else torch.stack(p).mean(0))
        if len(per_model) == 1:
            return per_model[0]
        logits = torch.stack([p.clamp(EPS, 1).log() for p in per_model]).mean(0)
        return torch.softmax(logits, dim=0)

    def _merge(self, probs: Tensor, mask: np.ndarray, given: tuple[int, ...]) -> Tensor:
        """Annotated objects take the mask; elsewhere the others keep their predicted share."""
        ids = self.objects.ids
        target = one_hot(mask, ids).to(probs)  # (K+1, H, W)
        channels = [ids.index(g) + 1 for g in given]
        annotated_here = target[channels].sum(0) > 0  # pixels of an annotated object
        unknown = torch.from_numpy(mask == 255).to(probs.device)
        if set(given) >= set(ids):
            return torch.where(unknown[None], probs, target)
        rest = probs.clone()
        rest[channels] = 0  # annotated objects are exactly where the mask says
        rest[0] += (rest.sum(0) <= EPS).to(rest)  # all mass was on annotated objects: background
        rest = rest / rest.sum(0, keepdim=True)
        out = torch.where(annotated_here[None], target, rest)
        return torch.where(unknown[None], probs, out)
