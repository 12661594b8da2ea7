"""Convolutions that run, at inference on CPU, as one oneDNN call with what follows them.

``Conv2d`` is ``nn.Conv2d`` (same parameters, same state-dict keys) whose call also takes the
BatchNorm, residual sum and activation after it: ``activation(norm(conv(x)) + add)``. In training,
or before ``prepare_convolutions``, that is the plain sequence of PyTorch ops. At inference
(``memvos.model.precision.set_precision`` prepares every such conv of a model) it is one call of
oneDNN's fused convolution (``torch.ops.mkldnn._convolution_pointwise``) on channels-last
tensors with the weights cast once to the compute dtype: the activation and the sum are applied
while the output is still in cache, and no per-call weight cast or layout reorder is left
(on the 2-core CPUs here, conv + ReLU6 at 480p in bfloat16 takes 0.5-0.8 of the two ops' time; in
the engine's loop the mask decoder went from 19-22 to 15-16 ms a frame; docs/results.md).

The fused path is taken only where the plain ops would compute at the prepared dtype (input of
that dtype, or autocast to it), with no gradient wanted, on CPU, and with the norm already folded
into the conv (``nn.Identity``); anything else takes the plain path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# activation name -> (oneDNN post-op, its scalars), and the plain op of the fallback
_ONEDNN_ACTIVATIONS = {"relu": ("relu", []), "relu6": ("hardtanh", [0.0, 6.0])}
_PLAIN_ACTIVATIONS = {"relu": lambda y: F.relu(y, inplace=True), "relu6": lambda y: F.relu6(y, inplace=True)}
_ONEDNN_AFTER_SUM = ("relu",)  # activations oneDNN applies after a fused sum (others: in place after it)
Lead = tuple[bool, bool]  # a zero tap before the kernel's first row / column (see lead_with_zero_taps)


@dataclass
class _Prepared:
    """A conv's weights for the fused path, per leading-tap variant, and the weight version they
    were made from (``Tensor._version`` changes when the weight is written: they are made again)."""

    dtype: torch.dtype
    version: int = -1
    weights: dict[Lead, tuple[Tensor, Tensor | None]] = field(default_factory=dict)


def lead_with_zero_taps(weight: Tensor, lead: Lead) -> Tensor:
    """The kernel (Cout, Cin, kh, kw) with a zero row before its first row (``lead[0]``) and a zero
    column before its first column (``lead[1]``).

    TF's SAME padding of a stride-2 convolution is often one row or column short at the start
    (e.g. 0 before, 1 after). Padding both sides by the larger amount and reading with this
    kernel gives the same output without copying the input into a padded tensor."""
    if not any(lead):
        return weight
    return F.pad(weight, [int(lead[1]), 0, int(lead[0]), 0])


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose call also applies a norm, a residual sum and an activation, fused at
    inference; see the module docstring."""

    _prepared: _Prepared | None = None

    def forward(self, x: Tensor, activation: str | None = None, add: Tensor | None = None,  # type: ignore[override]
                norm: nn.Module | None = None) -> Tensor:
        """activation(norm(conv(x)) + add); activation None, 'relu' or 'relu6'."""
        lead, padding = self.padding_for(x)
        return self.run(x, lead, padding, activation, add, norm)

    def padding_for(self, x: Tensor) -> tuple[Lead, tuple[int, ...] | str]:
        """(leading zero taps, symmetric padding) for input ``x``: the conv's own padding here."""
        return (False, False), self.padding  # type: ignore[return-value]

    def run(self, x: Tensor, lead: Lead, padding: tuple[int, ...] | str, activation: str | None = None,
            add: Tensor | None = None, norm: nn.Module | None = None) -> Tensor:
        """The call with the kernel led by zero taps ``lead`` and ``padding`` on both sides."""
        if not isinstance(padding, str) and self._fusable(x, norm):  # oneDNN takes numbers, not 'same'
            return self._fused(x, lead, padding, activation, add)
        y = F.conv2d(x, lead_with_zero_taps(self.weight, lead), self.bias, self.stride, padding, self.dilation,
                     self.groups)
        if norm is not None:
            y = norm(y)
        if add is not None:
            y = y + add
        return _PLAIN_ACTIVATIONS[activation](y) if activation else y

    def prepare(self, dtype: torch.dtype | None) -> None:
        """Run fused at ``dtype`` from now on (None: the plain ops again)."""
        self._prepared = None if dtype is None else _Prepared(dtype)

    def _fusable(self, x: Tensor, norm: nn.Module | None) -> bool:
        prepared = self._prepared
        if prepared is None or x.device.type != "cpu" or self.padding_mode != "zeros":
            return False
        if norm is not None and not isinstance(norm, nn.Identity):
            return False
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return False
        return _cpu_autocast_dtype() == prepared.dtype or x.dtype == prepared.dtype

    def _weights(self, lead: Lead) -> tuple[Tensor, Tensor | None]:
        """The prepared (weight, bias) for ``lead``, made again if the parameters were written."""
        prepared = self._prepared
        assert prepared is not None
        version = self.weight._version + (self.bias._version if self.bias is not None else 0)
        if prepared.version != version:
            prepared.weights.clear()
            prepared.version = version
        if lead not in prepared.weights:
            weight = lead_with_zero_taps(self.weight.detach(), lead).to(prepared.dtype)
            bias = self.bias.detach().to(prepared.dtype) if self.bias is not None else None
            prepared.weights[lead] = (weight.contiguous(memory_format=torch.channels_last), bias)
        return prepared.weights[lead]

    def _fused(self, x: Tensor, lead: Lead, padding: tuple[int, ...], activation: str | None,
               add: Tensor | None) -> Tensor:
        weight, bias = self._weights(lead)
        x = x.to(weight.dtype).contiguous(memory_format=torch.channels_last)
        attr, scalars = _ONEDNN_ACTIVATIONS[activation] if activation else ("none", [])
        geometry = (list(padding), list(self.stride), list(self.dilation), self.groups)
        if add is None:
            return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *geometry, attr, scalars, None)
        add = add.to(weight.dtype).contiguous(memory_format=torch.channels_last)
        fused_after = activation in _ONEDNN_AFTER_SUM  # oneDNN takes only these after a sum
        y = torch.ops.mkldnn._convolution_pointwise.binary(
            x, add, weight, bias, *geometry, "add", None, attr if fused_after else None, scalars, None)
        return _PLAIN_ACTIVATIONS[activation](y) if activation and not fused_after else y


def _cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype CPU autocast casts to, None when it is off."""
    try:
        on, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    except TypeError:  # PyTorch before 2.4 (pyproject allows 2.1 on)
        on, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return dtype if on else None


def onednn_fusion_available() -> bool:
    """Whether this PyTorch build has oneDNN and its fused convolution op (an internal op of
    PyTorch's compiler, present in the pinned 2.13 CPU build)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return torch.ops.mkldnn._convolution_pointwise is not None
    except (AttributeError, RuntimeError):
        return False


def prepare_convolutions(model: nn.Module, dtype: torch.dtype | None) -> int:
    """Prepare every ``Conv2d`` of ``model`` for fused inference at ``dtype`` (None: undo), where
    oneDNN can fuse; returns how many were prepared."""
    if dtype is not None and not onednn_fusion_available():
        return 0
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    for conv in convs:
        conv.prepare(dtype)
    return len(convs)
