"""Building blocks of the STM network: key/value heads, refinement decoder, soft aggregation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memvos.model.fused import Conv2d


class KeyValue(nn.Module):
    """3x3 convolutions from stride-16 features to a key map and a value map."""

    def __init__(self, in_dim: int, key_dim: int, value_dim: int) -> None:
        super().__init__()
        self.key = Conv2d(in_dim, key_dim, 3, padding=1)
        self.value = Conv2d(in_dim, value_dim, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.key(x), self.value(x)


class ResBlock(nn.Module):
    """Pre-activation residual block (ReLU, 3x3 conv, ReLU, 3x3 conv) with a 1x1 shortcut if widths differ."""

    def __init__(self, in_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        out_dim = out_dim or in_dim
        self.conv1 = Conv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = Conv2d(out_dim, out_dim, 3, padding=1)
        self.shortcut = Conv2d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        r = self.conv1(F.relu(x), "relu")  # the ReLU before conv2, applied by conv1
        return self.conv2(r, add=self.shortcut(x))


class Refine(nn.Module):
    """Refinement module: a skip feature, convolved, plus the coarser mask feature upsampled x2."""

    def __init__(self, skip_dim: int, dim: int) -> None:
        super().__init__()
        self.conv_skip = Conv2d(skip_dim, dim, 3, padding=1)
        self.res_skip = ResBlock(dim)
        self.res_out = ResBlock(dim)

    def forward(self, skip: Tensor, coarse: Tensor) -> Tensor:
        s = self.res_skip(self.conv_skip(skip))
        up = F.interpolate(coarse, size=s.shape[-2:], mode="bilinear", align_corners=False)
        return self.res_out(s + up)


class Decoder(nn.Module):
    """Memory readout at stride 16 -> refine with stride-8 and stride-4 skips -> 2-class logits."""

    def __init__(self, in_dim: int, skip8_dim: int, skip4_dim: int, dim: int = 128) -> None:
        super().__init__()
        self.conv_in = Conv2d(in_dim, dim, 3, padding=1)
        self.res_in = ResBlock(dim)
        self.refine8 = Refine(skip8_dim, dim)
        self.refine4 = Refine(skip4_dim, dim)
        self.predict = Conv2d(dim, 2, 3, padding=1)

    def forward(self, x16: Tensor, f8: Tensor, f4: Tensor, size: tuple[int, int]) -> Tensor:
        """x16 (B, in, h16, w16), f8, f4 skips -> logits (B, 2, H, W) (background, object)."""
        m = self.res_in(self.conv_in(x16))
        m = self.refine8(f8, m)
        m = self.refine4(f4, m)
        logits = self.predict(F.relu(m))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def soft_aggregate(object_probs: Tensor, eps: float = 1e-7) -> Tensor:
    """STM's soft aggregation: (K, H, W) per-object foreground probabilities ->
    (K+1, H, W) distribution over background + objects.

    Background = prod(1 - p_k); each channel becomes the logit log(p / (1 - p)) of its
    clamped probability, and a softmax over channels merges them.
    """
    background = torch.prod(1 - object_probs, dim=0, keepdim=True)
    p = torch.cat([background, object_probs])
    return torch.softmax(torch.logit(p, eps=eps), dim=0)  # logit clamps p to [eps, 1 - eps]


def first_frame_targets(labels: Tensor, num_objects: Tensor) -> tuple[Tensor, Tensor]:
    """Training clips: labels (B, T, H, W), num_objects (B,) -> frame 0's one-hot object masks
    (B, K, H, W) and which of the K = max(num_objects) channels each sample really has (B, K)."""
    k = max(int(num_objects.max()), 1)
    ids = torch.arange(1, k + 1, device=labels.device)
    return (labels[:, 0, None] == ids[None, :, None, None]).float(), ids[None] <= num_objects[:, None]


def aggregate_log_probs(object_probs: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """object_probs (B, K, H, W) -> soft-aggregated (B, K+1, H, W) and its log (padding
    channels, ``valid`` False, hold no mass)."""
    aggregated = torch.stack([soft_aggregate(p) for p in object_probs * valid[:, :, None, None]])
    return aggregated, aggregated.clamp(min=1e-7).log()


def channel_argmax(probs: Tensor) -> Tensor:
    """(C, H, W) -> (H, W) uint8 index of the largest channel (the first on ties), as ``argmax(0)``
    (C <= 256). A running maximum over the few channels: torch's argmax along the leading
    dimension of a 480p map takes ~30 ms on the CPUs here, this ~1 ms."""
    if probs.shape[0] > 256:
        raise ValueError(f"at most 256 channels, got {probs.shape[0]}")
    best = probs[0]
    index = torch.zeros(probs.shape[1:], dtype=torch.uint8, device=probs.device)
    for k in range(1, probs.shape[0]):
        index.masked_fill_(probs[k] > best, k)
        best = torch.maximum(best, probs[k])
    return index


def hard_probabilities(probs: Tensor) -> Tensor:
    """(C, H, W) probabilities -> (C, H, W) one-hot of each pixel's largest channel (same dtype)."""
    index = channel_argmax(probs)
    return torch.stack([index == k for k in range(probs.shape[0])]).to(probs.dtype)


def area_to_grid(x: Tensor, grid: tuple[int, int] | torch.Size) -> Tensor:
    """(..., h', w') area-averaged onto the (h, w) ``grid`` (a feature or key grid); returned
    as it is when already there."""
    return x if tuple(x.shape[-2:]) == tuple(grid) else F.adaptive_avg_pool2d(x, tuple(grid))
