"""Object ids as the user gives them (any of 1..254, e.g. 3 and 7) and their channel order."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from memvos.model.modules import channel_argmax


class ObjectManager:
    """Ordered object ids; channel k+1 of a probability map belongs to ``ids[k]``."""

    def __init__(self) -> None:
        self.ids: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids) -> tuple[int, ...]:
        """Add ids not yet tracked; returns the new ones."""
        new = tuple(int(i) for i in ids if int(i) not in self.ids)
        for obj in new:
            if not 1 <= obj <= 254:
                raise ValueError(f"object id {obj} out of range 1..254")
        self.ids = self.ids + new
        return new

    def remove(self, obj: int) -> None:
        if obj not in self.ids:
            raise KeyError(f"object {obj} is not tracked (tracked: {list(self.ids)})")
        self.ids = tuple(i for i in self.ids if i != obj)

    def labels(self, probs: Tensor) -> np.ndarray:
        """(K+1, H, W) probabilities -> (H, W) uint8 label map with the user's ids."""
        lut = np.array((0, *self.ids), dtype=np.uint8)
        return lut[channel_argmax(probs).cpu().numpy()]


def one_hot(labels: np.ndarray, ids: tuple[int, ...]) -> Tensor:
    """(H, W) label map -> (K+1, H, W) float one-hot over background + ``ids`` (others count as background)."""
    lab = torch.from_numpy(np.ascontiguousarray(labels)).long()
    out = torch.stack([lab == obj for obj in ids]).float() if ids else torch.zeros(0, *labels.shape)
    background = (1 - out.sum(0, keepdim=True)).clamp(min=0)
    return torch.cat([background, out], dim=0)
