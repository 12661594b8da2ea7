"""Re-identification of lost objects (the DyeNet idea) on the memory network's own features.

A memory network loses an object that is fully occluded or leaves the frame: its recent
memory says "absent", and when something similar shows up, the read latches onto it. Here
each object keeps templates, L2-normalised 256-d embeddings of its region (the given masks,
expanded with confidently predicted frames). Every frame, the object's predicted region is
split into candidates (connected components of its probability); each is scored by cosine
similarity to the templates.

- Tracked: a collapsed area marks the object lost; components unlike the object (a
  distractor the read spilled onto) are dropped.
- Lost: the object is removed from the frame (not hallucinated), and later frames are
  searched, also with a read from the object's template memory alone (the annotated and
  re-seeded frames) over the whole frame. A candidate that scores above ``accept`` re-seeds
  the object: its mask on that frame enters memory as a permanent entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

EMBED_DIM = 256
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass
class ReidConfig:
    """Thresholds of re-identification (similarities are cosines of 256-d embeddings)."""

    candidate_threshold: float = 0.2  # components of an object's probability above this are candidates
    accept: float = 0.55  # re-identifies a lost object (cross-fitted: 1% of other regions score above)
    keep: float = 0.25  # a tracked component scoring below is a distractor, dropped (10% of others above)
    margin: float = 0.05  # a candidate must score this much better than for any other object
    lost_area: float = 0.25  # lost when the area falls below this share of the object's usual area
    reappear_area: float = 0.5  # re-seed only once this share of the usual area is visible
    min_cells: int = 3  # smallest candidate, in feature-grid cells
    confident: float = 0.85  # mean foreground probability of a prediction that may become a template
    stable_area: tuple[float, float] = (0.7, 1.4)  # its area relative to the usual area
    template_every: int = 5  # frames between two templates taken from predictions
    max_templates: int = 16  # the given ones are never dropped; predicted ones first in, first out
    area_window: int = 10  # the usual area is the median over this many confident frames

    def __post_init__(self) -> None:
        if not 0 < self.candidate_threshold < 1 or not -1 <= self.keep <= self.accept <= 1:
            raise ValueError("re-id: 0 < candidate_threshold < 1 and -1 <= keep <= accept <= 1 are required")


# ---- embeddings ---------------------------------------------------------------------------
def colour_planes(rgb: Tensor, size) -> Tensor:
    """rgb (1, 3, H, W) in [0, 1] -> (3, h, w) opponent colour (intensity, red-green, yellow-blue)
    averaged on the feature grid: ImageNet features are nearly colour-blind at the deep levels,
    and colour is what tells many look-alikes apart."""
    r, g, b = rgb[0]
    planes = torch.stack([(r + g + b) / 3, r - g, (r + g) / 2 - b])
    return F.adaptive_avg_pool2d(planes[None], tuple(size))[0]


def reid_inputs(model, query, rgb: Tensor) -> Tensor:
    """The features regions are described with: the model's re-id features plus colour, (C + 3, h, w)."""
    features = model.reid_features(query)
    return torch.cat([features, colour_planes(rgb.to(features), features.shape[-2:])])


def region_descriptor(features: Tensor, weights: Tensor, eps: float = 1e-6) -> Tensor:
    """features (C, h, w), weights (N, h, w) in [0, 1] -> (N, 2C): weighted mean and standard
    deviation of the features over each region (the std carries texture, the mean appearance)."""
    w = weights.flatten(1)  # (N, hw)
    f = features.flatten(1)  # (C, hw)
    total = w.sum(1, keepdim=True).clamp(min=eps)
    mean = (w @ f.T) / total  # (N, C)
    var = ((w @ (f * f).T) / total - mean * mean).clamp(min=0)
    return torch.cat([mean, var.sqrt()], dim=1)


@dataclass
class Projection:
    """Learned whitening: e = normalise(matrix @ (descriptor - mean)); matrix (256, D)."""

    mean: Tensor
    matrix: Tensor

    def __call__(self, descriptors: Tensor) -> Tensor:
        return F.normalize((descriptors - self.mean) @ self.matrix.T, dim=-1)


def projection_path(feature_name: str) -> Path:
    return WEIGHTS_DIR / f"reid-{feature_name}.safetensors"


def load_projection(path: str | Path) -> Projection:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    return Projection(tensors["mean"].float(), tensors["matrix"].float())


def save_projection(projection: Projection, path: str | Path) -> None:
    from safetensors.torch import save_file

    from memvos.data.atomic import atomic_path

    with atomic_path(path) as tmp:
        save_file({"mean": projection.mean.half().contiguous(), "matrix": projection.matrix.half().contiguous()},
                  str(tmp))


class RegionEmbedder:
    """Region of a frame's features -> L2-normalised embedding (projected to 256-d when a
    projection fitted for these features exists; the raw descriptor otherwise)."""

    def __init__(self, projection: Projection | None = None) -> None:
        self.projection = projection

    @classmethod
    def for_model(cls, model) -> RegionEmbedder:
        """The embedder for ``model``'s re-id features, with its shipped projection if there is one."""
        name = getattr(model, "reid_feature_name", None)
        if name is None:
            raise ValueError(f"{type(model).__name__} has no re-identification features (reid_features)")
        path = projection_path(name)
        if path.is_file():
            return cls(load_projection(path))
        log.warning("no re-id projection for %s features (%s): using raw pooled features", name, path.name)
        return cls(None)

    def __call__(self, features: Tensor, weights: Tensor) -> Tensor:
        """features (C, h, w), weights (N, h, w) -> (N, E) unit vectors."""
        d = region_descriptor(features.float(), weights.float())
        if self.projection is not None:
            return self.projection(d.to(self.projection.mean.device))
        return F.normalize(d, dim=-1)


# ---- per-object state ----------------------------------------------------------------------
@dataclass
class ObjectTrack:
    """What re-id knows about one object."""

    given: list[Tensor] = field(default_factory=list)  # embeddings of annotated masks (kept)
    learned: list[Tensor] = field(default_factory=list)  # of confident predictions (first in, first out)
    areas: list[float] = field(default_factory=list)  # recent confident areas, in grid cells
    lost: bool = False
    last_template: int = -(10**9)
    similarity: float = 1.0  # of the latest kept region to the templates (0 when lost)
    events: list[tuple[int, str]] = field(default_factory=list)  # (frame, 'lost' | 'reidentified')

    def templates(self) -> Tensor:
        return torch.stack(self.given + self.learned)

    @property
    def usual_area(self) -> float:
        return float(np.median(self.areas)) if self.areas else 0.0


@dataclass
class Candidate:
    cells: Tensor  # (h, w) bool region on the feature grid
    probs: Tensor  # (h, w) the object's probability it came from
    source: str  # 'read' (this frame's prediction) or 'templates' (the template-memory read)
    area: float = 0.0
    similarity: float = 0.0
    rival: float = -1.0  # best similarity to any other object


def components(mask: np.ndarray, min_cells: int) -> list[np.ndarray]:
    """Connected components (8-connected) of a boolean grid with at least ``min_cells`` cells."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_cells]


class ReIdentifier:
    """Re-identification over a stream of frames; see the module docstring.

    The engine calls ``annotate`` on frames with masks and ``update`` on every other frame
    (after the memory read, before memorising); ``update`` returns the corrected probabilities
    and the objects re-seeded on this frame.
    """

    def __init__(self, embedder: RegionEmbedder, config: ReidConfig | None = None) -> None:
        self.embedder = embedder
        self.config = config or ReidConfig()
        self.tracks: dict[int, ObjectTrack] = {}

    def remove(self, obj: int) -> None:
        self.tracks.pop(obj, None)

    def annotate(self, frame: int, features: Tensor, probs: Tensor, ids: tuple[int, ...],
                 given: tuple[int, ...]) -> None:
        """Annotated objects: their masks become templates and they count as found."""
        grid = _to_grid(probs, features.shape[-2:])
        for obj in given:
            k = ids.index(obj) + 1
            area = float(grid[k].sum())
            track = self.tracks.setdefault(obj, ObjectTrack())
            if area < self.config.min_cells:
                track.lost, track.similarity = True, 0.0
                continue
            track.given.append(self.embedder(features, grid[k : k + 1])[0])
            track.areas = (track.areas + [area])[-self.config.area_window :]
            track.lost, track.similarity, track.last_template = False, 1.0, frame

    def update(self, frame: int, features: Tensor, probs: Tensor, ids: tuple[int, ...],
               skip: tuple[int, ...] = (), template_read: Callable[[], Tensor] | None = None
               ) -> tuple[Tensor, tuple[int, ...]]:
        """probs (K+1, H, W) of ``ids`` -> (corrected probs, objects re-seeded on this frame)."""
        grid_size = features.shape[-2:]
        grid = _to_grid(probs, grid_size)
        probs = probs.clone()
        reseeded, template_grid = [], None
        for k, obj in enumerate(ids, start=1):
            track = self.tracks.get(obj)
            if obj in skip or track is None or not (track.given or track.learned):
                continue
            candidates = self._candidates(features, grid[k], "read", obj, ids)
            if not track.lost:
                self._follow(frame, features, probs, grid[k], k, obj, track, candidates)
                continue
            if template_read is not None:
                if template_grid is None:
                    template_grid = _to_grid(template_read(), grid_size)
                candidates += self._candidates(features, template_grid[k], "templates", obj, ids)
            found = self._best_reappearance(track, candidates)
            if found is None:
                _remove_object(probs, k)
                track.similarity = 0.0
                continue
            _set_object(probs, k, _upsample(found.probs * _dilate(found.cells), probs.shape[-2:]))
            track.lost, track.similarity = False, found.similarity
            track.learned = (track.learned + [self._embed(features, found)])[-self._learned_cap(track) :]
            track.last_template = frame
            track.events.append((frame, "reidentified"))
            reseeded.append(obj)
        return probs, tuple(reseeded)

    # ---- steps --------------------------------------------------------------------------
    def _candidates(self, features: Tensor, fg: Tensor, source: str, obj: int, ids: tuple[int, ...]) -> list[Candidate]:
        cfg = self.config
        regions = components((fg > cfg.candidate_threshold).cpu().numpy(), cfg.min_cells)
        if not regions:
            return []
        cells = torch.from_numpy(np.stack(regions)).to(fg.device)
        embeddings = self.embedder(features, fg[None] * cells)
        own = (embeddings @ self.tracks[obj].templates().T).max(1).values
        rivals = [(embeddings @ t.templates().T).max(1).values for o, t in self.tracks.items()
                  if o != obj and o in ids and (t.given or t.learned)]
        rival = torch.stack(rivals).max(0).values if rivals else torch.full_like(own, -1.0)
        return [Candidate(c, fg, source, float((fg * c).sum()), float(s), float(r))
                for c, s, r in zip(cells, own, rival)]

    def _follow(self, frame: int, features: Tensor, probs: Tensor, fg: Tensor, k: int, obj: int,
                track: ObjectTrack, candidates: list[Candidate]) -> None:
        """A tracked object: mark it lost when it collapses, drop components unlike it."""
        cfg = self.config
        kept = [c for c in candidates if c.similarity >= cfg.keep and c.similarity >= c.rival - cfg.margin]
        if not kept and candidates and track.similarity < cfg.accept:
            # the object never matched its templates well (an unfamiliar look): appearance is no
            # evidence of a jump, so the read's main region stays
            kept = [max(candidates, key=lambda c: c.area)]
        area = sum(c.area for c in kept)
        if not kept or area < cfg.lost_area * track.usual_area:
            _remove_object(probs, k)
            track.lost, track.similarity = True, 0.0
            track.events.append((frame, "lost"))
            return
        dropped = [c.cells for c in candidates if not any(c is x for x in kept)]
        if dropped:
            outside = _upsample(_dilate(torch.stack(dropped).any(0)).float(), probs.shape[-2:]) > 0.5
            inside = _upsample(_dilate(torch.stack([c.cells for c in kept]).any(0)).float(), probs.shape[-2:]) > 0.5
            _set_object(probs, k, torch.where(outside & ~inside, 0.0, probs[k]))
        track.similarity = max(c.similarity for c in kept)
        region = torch.stack([c.cells for c in kept]).any(0)
        interior = region & (fg > 0.5)  # border cells are part background by construction
        confidence = float(fg[interior].mean()) if bool(interior.any()) else 0.0
        low, high = cfg.stable_area
        usual = track.usual_area
        if confidence >= cfg.confident and (usual == 0 or low * usual <= area <= high * usual):
            track.areas = (track.areas + [area])[-cfg.area_window :]
            if frame - track.last_template >= cfg.template_every and track.similarity >= cfg.accept:
                track.learned = (track.learned + [self.embedder(features, (fg * region)[None])[0]])[-self._learned_cap(track) :]
                track.last_template = frame

    def _best_reappearance(self, track: ObjectTrack, candidates: list[Candidate]) -> Candidate | None:
        cfg = self.config
        good = [c for c in candidates if c.similarity >= cfg.accept and c.similarity >= c.rival + cfg.margin
                and c.area >= cfg.reappear_area * track.usual_area]
        return max(good, key=lambda c: c.similarity) if good else None

    def _embed(self, features: Tensor, candidate: Candidate) -> Tensor:
        return self.embedder(features, (candidate.probs * candidate.cells)[None])[0]

    def _learned_cap(self, track: ObjectTrack) -> int:
        return max(self.config.max_templates - len(track.given), 1)


# ---- small tensor helpers -------------------------------------------------------------------
def _to_grid(probs: Tensor, size) -> Tensor:
    """(K+1, H, W) -> (K+1, h, w) area averages on the feature grid."""
    return F.adaptive_avg_pool2d(probs[None].float(), tuple(size))[0]


def _upsample(grid: Tensor, size) -> Tensor:
    return F.interpolate(grid[None, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0, 0]


def _dilate(cells: Tensor) -> Tensor:
    """One grid cell of margin around a boolean region (its border cells are half object)."""
    return F.max_pool2d(cells[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0


def _remove_object(probs: Tensor, k: int) -> None:
    """Channel k's mass goes to the background."""
    probs[0] += probs[k]
    probs[k] = 0


def _set_object(probs: Tensor, k: int, new: Tensor) -> None:
    """Channel k := ``new``; the other channels share what is left in their old proportions."""
    others = probs.clone()
    others[k] = 0
    total = others.sum(0, keepdim=True)
    scaled = torch.where(total > 1e-7, others / total.clamp(min=1e-7), torch.zeros_like(others))
    scaled[0] = torch.where(total[0] > 1e-7, scaled[0], torch.ones_like(scaled[0]))
    out = scaled * (1 - new)[None]
    out[k] = new
    probs.copy_(out)
