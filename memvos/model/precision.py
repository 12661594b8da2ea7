"""Inference precision: where the CPU does bfloat16 natively, the encoders and the memory
read's selection products run in it (about 4x faster on 2 cores than float32 here), the rest
in float32.

Modules that can run faster at low precision carry a ``compute_dtype`` attribute (float32 as
built, which is what training uses); ``set_precision`` sets it on every such module of a model
loaded for inference. The switch is ``inference.precision`` in a config (``memvos segment
--precision``): ``auto`` (bfloat16 where native, else float32), ``float32`` or ``bfloat16``.
"""

from __future__ import annotations

import torch
from torch import nn

from memvos.model.fused import prepare_convolutions

PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device: str | torch.device = "cpu") -> bool:
    """Whether bfloat16 matrix products and convolutions are fast on ``device`` (oneDNN's check
    on CPU, the CUDA device's on GPU)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the check: assume not
        return False


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype ``precision`` stands for on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def set_precision(model: nn.Module, precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    """Set the compute dtype of every module of ``model`` that has one; returns the dtype."""
    dtype = resolve_precision(precision, device)
    for module in model.modules():
        if hasattr(module, "set_compute_dtype"):
            module.set_compute_dtype(dtype)
        elif hasattr(module, "compute_dtype"):
            module.compute_dtype = dtype
    prepare_convolutions(model, dtype)  # after the BatchNorms are folded in (set_compute_dtype)
    return dtype
