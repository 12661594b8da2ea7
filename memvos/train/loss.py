"""Bootstrapped cross-entropy: after a warm-up, only the hardest pixels count."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def bootstrapped_ce(log_probs: Tensor, labels: Tensor, top: float = 1.0) -> Tensor:
    """log_probs (N, C, H, W), labels (N, H, W) long -> mean NLL over each sample's hardest
    ``top`` fraction of pixels (``top`` = 1: plain cross-entropy)."""
    loss = F.nll_loss(log_probs, labels, reduction="none").flatten(1)  # (N, H*W)
    if top >= 1.0:
        return loss.mean()
    k = max(1, int(loss.shape[1] * top))
    return loss.topk(k, dim=1).values.mean()


def bootstrap_fraction(iteration: int, warmup: int, top: float) -> float:
    """1.0 during the warm-up, then ``top`` (e.g. 0.15, STM/XMem's bootstrapping)."""
    return 1.0 if iteration < warmup else top


def clip_loss(log_probs: Tensor, labels: Tensor, top: float) -> Tensor:
    """log_probs (B, N, C, H, W) for the last N frames of labels (B, T, H, W): frames 1.. in
    the semi-supervised pass (N = T-1), all frames in the interactive one (N = T)."""
    n = log_probs.shape[1]
    return bootstrapped_ce(log_probs.flatten(0, 1), labels[:, labels.shape[1] - n :].flatten(0, 1), top)

