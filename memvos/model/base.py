"""What every segmentation model offers the inference engine.

A model turns a frame into a query encoding, turns a frame and its object probabilities
into a memory entry, and segments a query from a list of memory entries. The engine owns
which entries stay in memory; the model owns what an entry holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor


@dataclass
class MemoryEntry:
    """One memorised frame.

    key:   (B, Ck, h, w) — B = 1 when all objects share the key (training-free mode),
           else one key per object (STM: the memory encoder sees the object's mask).
    value: (B, Cv, h, w) — matching values.
    object_ids: the objects this entry knows, in channel/batch order.
    object_features: (K, C) or None — per object, the mask-weighted mean of the memory
           encoder's features (O, for the instance-aware head; None when the model has none).
    """

    key: Tensor
    value: Tensor
    object_ids: tuple[int, ...]
    object_features: Tensor | None = None


class SegmentationModel(Protocol):
    """The interface the inference engine drives (frames are (1, 3, H, W) floats in [0, 1])."""

    def encode_query(self, rgb: Tensor) -> Any: ...

    def memorize(self, rgb: Tensor, query: Any, probs: Tensor, object_ids: tuple[int, ...]) -> MemoryEntry:
        """probs: (K+1, H, W), background first, then ``object_ids`` in order. Models whose config
        has ``scribbles: true`` also take ``strokes=`` (K, 2, H, W): positive, negative stroke maps."""
        ...

    def segment(self, query: Any, memory: list[MemoryEntry], object_ids: tuple[int, ...]) -> Tensor:
        """(K+1, H, W) probabilities (background first) for ``object_ids``."""
        ...
