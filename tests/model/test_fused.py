"""Fused inference convolutions: the same function as the plain ops, at the prepared dtype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from memvos.model.backbones import SameConv2d, build_backbone
from memvos.model.frozen_key import FrozenKeyConfig, FrozenKeySTM
from memvos.model.fused import Conv2d, lead_with_zero_taps, onednn_fusion_available, prepare_convolutions
from memvos.model.precision import set_precision

needs_onednn = pytest.mark.skipif(not onednn_fusion_available(), reason="no oneDNN fused convolution in this build")


def plain(conv: torch.nn.Conv2d, x, activation=None, add=None, padding=None):
    """The reference: activation(conv(x) + add) in float32 with PyTorch's own ops."""
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding if padding is None else padding,
                 conv.dilation, conv.groups)
    y = y + add if add is not None else y
    return {"relu": F.relu, "relu6": F.relu6, None: lambda t: t}[activation](y)


def test_before_preparing_the_call_is_the_plain_sequence_of_ops():
    torch.manual_seed(0)
    conv, norm = Conv2d(4, 6, 3, padding=1), torch.nn.BatchNorm2d(6).eval()
    norm.running_mean.uniform_(-1, 1)
    x, add = torch.randn(2, 4, 9, 11), torch.randn(2, 6, 9, 11)
    out = conv(x, "relu6", add=add, norm=norm)
    assert torch.equal(out, F.relu6(norm(plain(conv, x)) + add))
    assert out.min() >= 0 and out.max() <= 6


@needs_onednn
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("groups", [1, 4])
def test_prepared_float32_is_one_fused_call_with_the_plain_result(activation, residual, groups):
    torch.manual_seed(0)
    conv = Conv2d(8, 8, 3, padding=1, groups=groups)
    x = torch.randn(1, 8, 13, 17) * 4
    add = torch.randn(1, 8, 13, 17) if residual else None
    expected = plain(conv, x, activation, add)
    prepare_convolutions(conv, torch.float32)
    with torch.no_grad():
        out = conv(x, activation, add=add)
    assert out.is_contiguous(memory_format=torch.channels_last)  # went through oneDNN's fused call
    assert torch.allclose(out, expected, atol=1e-4)


@needs_onednn
def test_prepared_bfloat16_runs_under_autocast_and_stays_close():
    torch.manual_seed(0)
    conv = Conv2d(16, 32, 1)
    x = torch.randn(1, 16, 20, 24)
    expected = plain(conv, x, "relu6")
    prepare_convolutions(conv, torch.bfloat16)
    with torch.no_grad():
        assert conv(x, "relu6").dtype == torch.float32  # float32 input, no autocast: the plain ops
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x, "relu6")
    assert out.dtype == torch.bfloat16
    assert ((out.float() - expected).norm() / expected.norm()) < 0.02


@needs_onednn
def test_writing_the_weights_after_preparing_is_seen():
    torch.manual_seed(0)
    conv = Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 8, 8)
    prepare_convolutions(conv, torch.float32)
    with torch.no_grad():
        conv(x)
        conv.load_state_dict({"weight": torch.randn(4, 4, 3, 3), "bias": torch.randn(4)})
        assert torch.allclose(conv(x), plain(conv, x), atol=1e-4)


@needs_onednn
def test_padding_given_as_a_word_takes_the_plain_path():
    torch.manual_seed(0)
    conv = Conv2d(3, 4, 3, padding="same")
    x = torch.randn(1, 3, 7, 9)
    prepare_convolutions(conv, torch.float32)
    with torch.no_grad():
        assert torch.equal(conv(x, "relu"), F.relu(F.conv2d(x, conv.weight, conv.bias, padding="same")))


@needs_onednn
def test_gradients_take_the_plain_path():
    conv = Conv2d(3, 5, 3, padding=1)
    prepare_convolutions(conv, torch.float32)
    out = conv(torch.randn(1, 3, 6, 6), "relu")
    assert out.requires_grad and out.grad_fn is not None


@needs_onednn
@pytest.mark.parametrize("size", [(64, 65), (65, 64), (65, 65)])
def test_fused_same_padding_of_a_stride_2_convolution(size):
    """Odd padding totals: the fused call reads with the kernel led by zero taps, as the plain one."""
    torch.manual_seed(0)
    conv = SameConv2d(4, 4, 3, stride=2, groups=4)
    conv.bias = torch.nn.Parameter(torch.randn(4))
    x = torch.randn(1, 4, *size)
    expected = conv(x, "relu6")
    prepare_convolutions(conv, torch.float32)
    with torch.no_grad():
        out = conv(x, "relu6")
    assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-5)


def test_leading_zero_taps_shift_the_kernel():
    w = torch.arange(1.0, 5.0).view(1, 1, 2, 2)
    led = lead_with_zero_taps(w, (True, True))
    assert led.shape == (1, 1, 3, 3) and led[0, 0, 0].sum() == 0 and led[0, 0, :, 0].sum() == 0
    assert torch.equal(led[0, 0, 1:, 1:], w[0, 0])
    assert lead_with_zero_taps(w, (False, False)) is w


@needs_onednn
def test_a_prepared_backbone_gives_the_plain_features():
    torch.manual_seed(0)
    backbone = build_backbone("efficientnet-lite0").eval()
    rgb = torch.rand(1, 3, 67, 93)
    backbone.fold_batch_norms()
    with torch.no_grad():
        expected = backbone(rgb)
        assert prepare_convolutions(backbone, torch.float32) > 10
        fused = backbone(rgb)
    for a, b in zip(fused, expected, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-3, rtol=1e-3)


@needs_onednn
def test_set_precision_prepares_every_conv_of_the_model():
    model = FrozenKeySTM(FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False)).eval()
    set_precision(model, "float32")
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    assert convs and all(c._prepared is not None for c in convs)
    prepare_convolutions(model, None)
    assert all(c._prepared is None for c in convs)
