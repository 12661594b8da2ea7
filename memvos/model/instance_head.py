"""Instance-aware head (issue 7, the LGDK seed): local and global dynamic kernels, and ASPP.

Pixel-level memory matching has no notion of *which* object a pixel belongs to beyond the
values it reads. This head adds an object-level summary: O, the mask-weighted mean of the
memory encoder's feature map for one object on one memorised frame. From O it generates a
convolution kernel per object (a dynamic kernel), applied to the decoder's last feature map:

- global kernel: from O_G, the mean of O over all memorised frames of that object;
- local kernel:  from O_{t-1}, O of the most recently memorised frame;
- both:          from concat(O_G, O_{t-1}).

``ASPP`` (atrous spatial pyramid pooling) widens the context of the memory read before the
decoder. Every piece starts as the identity (zero-initialised last layers), so a model
fine-tuned from weights without the head starts exactly where those weights were.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memvos.model.base import MemoryEntry

KERNEL_MODES = ("add", "replace")
KERNEL_SIZE = 3  # as the static `predict` conv: a 3x3 neighbourhood at stride 4 sees edges, not just one pixel
FC_HIDDEN = 256  # width of the two hidden layers of the kernel generator
ASPP_DILATIONS = (2, 4, 8)  # in stride-8 key cells; see ASPP


def object_features(features: Tensor, masks: Tensor, eps: float = 1e-6) -> Tensor:
    """O = sum_i m_i f_i / sum_i m_i per object: the mask-weighted mean feature (empty masks: 0).

    features (B, C, h, w) shared by all objects, or (B, K, C, h, w) per object; masks (B, K, H, W)
    object probabilities, area-resized to (h, w) when the grids differ -> (B, K, C)."""
    if masks.shape[-2:] != features.shape[-2:]:
        masks = F.adaptive_avg_pool2d(masks, features.shape[-2:])
    if features.dim() == 4:
        features = features[:, None]  # (B, 1, C, h, w), broadcast over objects
    weighted = (features * masks[:, :, None]).sum((-2, -1))  # (B, K, C)
    area = masks.sum((-2, -1))[..., None]  # (B, K, 1)
    return weighted / area.clamp(min=eps)


def dynamic_conv(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """One kernel per sample, as a grouped convolution: features (N, C, h, w), weight (N, C, k, k),
    bias (N,) -> (N, 1, h, w) (zero padding, same size)."""
    n, c, h, w = features.shape
    out = F.conv2d(features.reshape(1, n * c, h, w), weight, bias, padding=weight.shape[-1] // 2, groups=n)
    return out.reshape(n, 1, h, w)


class DynamicKernelHead(nn.Module):
    """Object summaries -> the weights and bias of a 1-output conv over the decoder features.

    Three fully connected layers (ReLU between) map concat(O_G, O_{t-1}) (or the one switched
    on), ``in_dim`` wide, to ``feature_dim * k * k + 1`` numbers. ``zero_init``: the last layer
    starts at zero, so the generated conv is zero and, added to the static one, changes nothing."""

    def __init__(self, in_dim: int, feature_dim: int, kernel_size: int = KERNEL_SIZE, hidden: int = FC_HIDDEN,
                 zero_init: bool = True) -> None:
        super().__init__()
        self.feature_dim, self.kernel_size = feature_dim, kernel_size
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                nn.Linear(hidden, feature_dim * kernel_size**2 + 1))
        if zero_init:
            nn.init.zeros_(self.fc[-1].weight)
            nn.init.zeros_(self.fc[-1].bias)

    @property
    def last(self) -> nn.Linear:
        return self.fc[-1]

    def kernels(self, objects: Tensor) -> tuple[Tensor, Tensor]:
        """objects (N, in_dim) -> weight (N, feature_dim, k, k), bias (N,)."""
        params = self.fc(objects)  # (N, C * k * k + 1)
        k = self.kernel_size
        return params[:, :-1].reshape(-1, self.feature_dim, k, k), params[:, -1]

    def forward(self, features: Tensor, objects: Tensor) -> Tensor:
        """features (N, C, h, w), objects (N, in_dim) -> logits (N, 1, h, w), N = B * K."""
        weight, bias = self.kernels(objects)
        return dynamic_conv(features, weight.to(features.dtype), bias.to(features.dtype))

    def start_as(self, conv: nn.Conv2d) -> None:
        """Generate ``conv``'s weights for every object (last layer: zero weight, bias = conv), so
        that ``replace`` mode starts as the static head it replaces."""
        if conv.weight.shape != (1, self.feature_dim, self.kernel_size, self.kernel_size):
            raise ValueError(f"cannot start as a conv of shape {tuple(conv.weight.shape)}")
        with torch.no_grad():
            self.last.weight.zero_()
            self.last.bias.copy_(torch.cat([conv.weight.flatten(), conv.bias.flatten()]))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling over the read values, added residually (starts as identity).

    Branches: a 1x1 conv, 3x3 convs with dilations ``dilations``, and image pooling (global
    context); concatenated, then a zero-initialised 1x1 projection back to ``dim`` channels.
    Dilations 2, 4, 8 on the stride-8 key grid reach 5, 9 and 17 cells (40-136 px): DeepLab's
    6/12/18 are for stride 16, and on the 48x48 grid of a 384 training crop 18 would mostly
    read padding. No BatchNorm: batches are a few clips, and the head must behave the same in
    training and inference."""

    def __init__(self, dim: int, width: int | None = None, dilations: Sequence[int] = ASPP_DILATIONS) -> None:
        super().__init__()
        width = width or dim
        self.branches = nn.ModuleList([nn.Conv2d(dim, width, 1)] +
                                      [nn.Conv2d(dim, width, 3, padding=d, dilation=d) for d in dilations])
        self.pool = nn.Conv2d(dim, width, 1)
        self.project = nn.Conv2d(width * (len(dilations) + 2), dim, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, dim, h, w) -> x + projection of the pyramid (N, dim, h, w)."""
        parts = [F.relu(branch(x)) for branch in self.branches]
        pooled = F.relu(self.pool(x.mean((-2, -1), keepdim=True)))  # (N, width, 1, 1)
        parts.append(pooled.expand(-1, -1, *x.shape[-2:]))
        return x + self.project(torch.cat(parts, dim=1))

    def on_read(self, read: Tensor) -> Tensor:
        """read (B, K, 1 + dim, h, w) -> the same with ASPP on channels 1:, channel 0 (the
        propagated mask, the residual decoder's prior) untouched."""
        values = self.forward(read[:, :, 1:].flatten(0, 1)).unflatten(0, read.shape[:2])
        return torch.cat([read[:, :, :1], values], dim=2)


class ObjectFeatureStats:
    """Streaming O_G and O_{t-1} per object id: a running mean over every memorised frame (even
    those the memory bank has since evicted, in O(objects) memory) and the latest O."""

    def __init__(self) -> None:
        self._sum: dict[int, Tensor] = {}  # float64 sums: exact enough over any stream length
        self._count: dict[int, int] = {}
        self._latest: dict[int, Tensor] = {}

    def __contains__(self, obj: int) -> bool:
        return obj in self._count

    def count(self, obj: int) -> int:
        return self._count.get(obj, 0)

    def update(self, entry: MemoryEntry) -> None:
        """Add the O of each object ``entry`` knows (entries without object features: no-op)."""
        if entry.object_features is None:
            return
        for obj, o in zip(entry.object_ids, entry.object_features):  # o: (C,)
            o = o.detach()
            self._sum[obj] = self._sum[obj] + o.double() if obj in self._sum else o.double().clone()
            self._count[obj] = self._count.get(obj, 0) + 1
            self._latest[obj] = o

    def global_mean(self, ids: Sequence[int], like: Tensor | None = None) -> Tensor:
        """(K, C) O_G of ``ids`` (zeros for an id never seen, shaped as ``like`` (C,))."""
        return self._gather(ids, lambda i: self._sum[i] / self._count[i], like)

    def latest(self, ids: Sequence[int], like: Tensor | None = None) -> Tensor:
        """(K, C) O_{t-1} of ``ids`` (zeros for an id never seen)."""
        return self._gather(ids, lambda i: self._latest[i], like)

    def _gather(self, ids: Sequence[int], get, like: Tensor | None) -> Tensor:
        ref = like if like is not None else next(iter(self._latest.values()), None)
        if ref is None:
            raise ValueError("no object features seen yet")
        return torch.stack([get(i).to(ref) if i in self._count else torch.zeros_like(ref) for i in ids])


def stats_from_entries(entries: Sequence[MemoryEntry]) -> ObjectFeatureStats:
    """The statistics of a list of memory entries (in frame order): what the engine's running
    statistics hold when nothing has been evicted; the fallback when none are given."""
    stats = ObjectFeatureStats()
    for entry in entries:
        stats.update(entry)
    return stats
