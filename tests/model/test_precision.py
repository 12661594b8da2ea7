"""Inference precision: the switch, what it sets on a model, and that bfloat16 features stay close."""

from __future__ import annotations

import pytest
import torch

from memvos.cli import PRECISION_CHOICES
from memvos.config import config_from_dict
from memvos.inference.core import InferenceConfig, InferenceCore
from memvos.model.frozen_key import FrozenKeyConfig, FrozenKeySTM
from memvos.model.memory_read import ReadConfig
from memvos.model.precision import PRECISIONS, native_bfloat16, resolve_precision, set_precision


def tiny_model() -> FrozenKeySTM:
    torch.manual_seed(0)
    return FrozenKeySTM(FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False,
                                        read=ReadConfig(mode="kmn", sigma=2.0, top_k=5, temperature=0.1))).eval()


def test_precision_names_resolve_to_dtypes():
    assert resolve_precision("float32") == torch.float32
    assert resolve_precision("bfloat16") == torch.bfloat16
    assert resolve_precision("auto") == (torch.bfloat16 if native_bfloat16("cpu") else torch.float32)
    assert resolve_precision("auto", "meta") == torch.float32  # no fast bfloat16 known there
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def test_a_config_refuses_an_unknown_precision_and_the_cli_offers_the_known_ones():
    assert PRECISION_CHOICES == PRECISIONS
    assert InferenceConfig().precision == "auto"
    assert config_from_dict({"inference": {"precision": "float32"}}).inference.precision == "float32"
    with pytest.raises(ValueError, match="precision"):
        InferenceConfig(precision="half")


def test_set_precision_reaches_the_backbone_and_the_read():
    model = tiny_model()
    assert set_precision(model, "bfloat16") == torch.bfloat16
    assert model.backbone.compute_dtype == torch.bfloat16 and model.read.compute_dtype == torch.bfloat16
    assert model.backbone._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())  # folded
    set_precision(model, "float32")
    assert model.backbone.compute_dtype == torch.float32 and model.read.compute_dtype == torch.float32


def test_bfloat16_features_are_float32_tensors_close_to_the_float32_ones():
    model = tiny_model()
    rgb = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        exact = model.backbone(rgb)
        set_precision(model, "bfloat16")
        low = model.backbone(rgb)
    for a, b in zip(low, exact, strict=True):
        assert a.dtype == torch.float32 and a.shape == b.shape and a.is_contiguous()
        assert ((a - b).norm() / b.norm()) < 0.1  # bfloat16 keeps about 3 significant digits per step


def test_the_engine_runs_a_bfloat16_model_and_returns_float32_probabilities():
    model = tiny_model()
    set_precision(model, "bfloat16")
    core = InferenceCore(model, InferenceConfig(max_short_side=None))
    frame = (torch.rand(64, 96, 3) * 255).to(torch.uint8).numpy()
    mask = torch.zeros(64, 96, dtype=torch.uint8)
    mask[20:40, 30:60] = 1
    probs = [core.step(frame, mask.numpy()), core.step(frame), core.step(frame)]
    for p in probs:
        assert p.dtype == torch.float32 and p.shape == (2, 64, 96)
        assert torch.allclose(p.sum(0), torch.ones(64, 96), atol=1e-4)
    assert (core.labels(probs[-1]) == mask.numpy()).mean() > 0.9  # the same frame again: the same mask
