"""Training-free segmentation: frozen ImageNet features as keys, the masks themselves as values.

Works before any VOS training exists and stays as a fallback. Keys are L2-normalised
backbone features (computed at stride 8 by dilating the last stages, which matters most
for accuracy), optionally joined by the stride-8 stage's (``with_f8``: finer detail); values
are the memorised frames' object probabilities, downsampled to the key grid; the read (top-k, KMN kernel, cosine affinity / temperature) returns a
distribution over background + objects for every query cell, upsampled to full size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memvos.model.backbones import build_backbone
from memvos.model.base import MemoryEntry
from memvos.model.memory_read import MemoryRead, ReadConfig
from memvos.model.modules import area_to_grid, hard_probabilities


@dataclass
class TrainingFreeConfig:
    backbone: str = "efficientnet-lite0"
    output_stride: int = 8  # 8: dilated last stages (much better masks); 16: faster
    deep16: bool = False  # use the stride-32 stages too (dilated) for the keys
    with_f8: bool = False  # keys also hold the stride-8 stage's features (each part unit norm, equal weight)
    pretrained: bool | str = True
    hard_memory: bool = True  # memorise one-hot (argmax) masks: soft ones blur a little more every frame
    read: ReadConfig = field(default_factory=lambda: ReadConfig(mode="kmn", sigma=8.0, top_k=5, temperature=0.1))


@dataclass
class _Query:
    key: Tensor  # (1, Ck, h, w), unit norm along channels
    size: tuple[int, int]  # frame size (H, W) at this branch


class TrainingFreeModel(nn.Module):
    """Label propagation by attention over frozen features; see the module docstring."""

    def __init__(self, config: TrainingFreeConfig | None = None) -> None:
        super().__init__()
        self.config = config or TrainingFreeConfig()
        self.backbone = build_backbone(self.config.backbone, output_stride=self.config.output_stride,
                                       pretrained=self.config.pretrained, deep16=self.config.deep16)
        self.read = MemoryRead(self.config.read)
        self.eval()

    def encode_query(self, rgb: Tensor) -> _Query:
        """rgb (1, 3, H, W) in [0, 1] -> normalised key map."""
        _, f8, f16 = self.backbone(rgb)
        key = F.normalize(f16, dim=1)
        if self.config.with_f8:
            f8 = area_to_grid(f8, f16.shape[-2:])  # keys at stride 16: pooled onto their grid
            key = torch.cat([key, F.normalize(f8, dim=1)], dim=1) / 2**0.5  # unit norm
        return _Query(key, tuple(rgb.shape[-2:]))

    def memorize(self, rgb: Tensor, query: _Query, probs: Tensor, object_ids: tuple[int, ...]) -> MemoryEntry:
        """Store the query key and the objects' probabilities on the key grid (area average)."""
        grid = query.key.shape[-2:]
        if self.config.hard_memory:
            probs = hard_probabilities(probs)
        value = area_to_grid(probs[None, 1:], grid)
        return MemoryEntry(key=query.key, value=value, object_ids=object_ids)

    def segment(self, query: _Query, memory: list[MemoryEntry], object_ids: tuple[int, ...]) -> Tensor:
        """(K+1, H, W) probabilities for ``object_ids`` from the memorised frames."""
        keys = torch.stack([m.key for m in memory], dim=2)  # (1, Ck, T, h, w)
        values = torch.stack([_select(m, object_ids) for m in memory], dim=2)  # (1, K+1, T, h, w)
        read = self.read(keys, values, query.key)  # (1, K+1, h, w)
        probs = F.interpolate(read, size=query.size, mode="bilinear", align_corners=False)[0]
        probs = probs.clamp(min=0)
        probs = probs / probs.sum(0, keepdim=True).clamp(min=1e-7)
        return probs

    @property
    def reid_feature_name(self) -> str:
        return f"{self.config.backbone}-key-s{self.config.output_stride}" + ("-f8" if self.config.with_f8 else "")

    def reid_features(self, query: _Query) -> Tensor:
        """(C, h, w) the normalised key map (re-identification features)."""
        return query.key[0]


def _select(entry: MemoryEntry, object_ids: tuple[int, ...]) -> Tensor:
    """(1, K+1, h, w): background then ``object_ids``; objects the entry does not know are absent
    (zero), and removed objects' mass goes to the background."""
    value = entry.value[0]  # (K_entry, h, w)
    channels = [value[entry.object_ids.index(i)] if i in entry.object_ids else torch.zeros_like(value[0])
                for i in object_ids]
    objects = torch.stack(channels) if channels else value.new_zeros(0, *value.shape[-2:])
    background = (1 - objects.sum(0, keepdim=True)).clamp(min=0)
    return torch.cat([background, objects])[None]
