"""The training-free model's keys."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from memvos.model.training_free import TrainingFreeConfig, TrainingFreeModel


@pytest.mark.parametrize("stride", [8, 16])
def test_keys_with_the_stride_8_stage_are_both_parts_normalised(stride):
    torch.manual_seed(0)
    model = TrainingFreeModel(TrainingFreeConfig(output_stride=stride, with_f8=True, pretrained=False))
    rgb = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        key = model.encode_query(rgb).key
        _, f8, f16 = model.backbone(rgb)
    c16 = f16.shape[1]
    assert key.shape == (1, c16 + f8.shape[1], 64 // stride, 96 // stride)
    torch.testing.assert_close(key.norm(dim=1), torch.ones(1, *key.shape[-2:]))
    f8 = F.adaptive_avg_pool2d(f8, f16.shape[-2:])  # stride 16: pooled onto the key grid
    torch.testing.assert_close(key[:, c16:] * 2**0.5, F.normalize(f8, dim=1))
    torch.testing.assert_close(key[:, :c16] * 2**0.5, F.normalize(f16, dim=1))
    plain = TrainingFreeModel(TrainingFreeConfig(output_stride=stride, pretrained=False))
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert plain.encode_query(rgb).key.shape[1] == c16
