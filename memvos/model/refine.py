"""Edge-aware refinement of coarse probability maps with the frame as guide (guided filter).

Probabilities upsampled from a stride-8 or stride-16 grid have blurry, blocky edges; the
guided filter (He et al., 2010) snaps them to the image's edges in O(pixels), using box
filters only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def box_filter(x: Tensor, radius: int) -> Tensor:
    """Mean over a (2r+1)^2 window, windows clipped at the border. x: (B, C, H, W)."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    """Filter ``src`` (B, C, H, W) guided by the grey image ``guide`` (B, 1, H, W) in [0, 1]."""
    mean_i = box_filter(guide, radius)
    mean_p = box_filter(src, radius)
    cov_ip = box_filter(guide * src, radius) - mean_i * mean_p
    var_i = box_filter(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_filter(a, radius) * guide + box_filter(b, radius)


def refine_probabilities(rgb: Tensor, probs: Tensor, radius: int = 8, eps: float = 1e-3) -> Tensor:
    """rgb (1, 3, H, W) in [0, 1], probs (K+1, H, W) -> refined probs (K+1, H, W) summing to 1."""
    grey = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
    out = guided_filter(grey, probs[None], radius, eps)[0].clamp(min=0)
    return out / out.sum(0, keepdim=True).clamp(min=1e-7)
