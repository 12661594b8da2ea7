"""An ensemble of two models with different backbones through the streaming engine: the output
is softmax(mean of the models' log-probabilities)."""

from __future__ import annotations

import numpy as np
import torch

from memvos.inference.core import EPS, InferenceConfig, InferenceCore
from memvos.model.frozen_key import FrozenKeyConfig, FrozenKeySTM
from memvos.model.memory_read import ReadConfig


def _model(backbone: str, seed: int) -> FrozenKeySTM:
    torch.manual_seed(seed)
    cfg = FrozenKeyConfig(backbone=backbone, value_dim=8, decoder_dim=8, pretrained=False,
                          read=ReadConfig(mode="stm", top_k=5, temperature=0.1))
    model = FrozenKeySTM(cfg)
    with torch.no_grad():
        model.decoder.predict.weight.normal_(std=0.1)  # as trained: the models disagree
    return model.eval()


def _mean_log_probs(probs: list[torch.Tensor]) -> torch.Tensor:
    return torch.softmax(torch.stack([p.clamp(EPS, 1).log() for p in probs]).mean(0), dim=0)


def test_two_backbones_average_their_log_probabilities():
    lite, resnet = _model("efficientnet-lite0", 0), _model("resnet50", 1)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[8:24, 8:30] = 1
    mask[28:44, 36:60] = 2
    config = InferenceConfig()
    ensemble, singles = InferenceCore([lite, resnet], config), [InferenceCore(m, config) for m in (lite, resnet)]
    for core in (ensemble, *singles):
        core.step(frames[0], mask)
    # frame 1: all memories hold frame 0 with its mask, so the single models' outputs are comparable
    alone = [core.step(frames[1]) for core in singles]
    together = ensemble.step(frames[1])
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)
    torch.testing.assert_close(together, _mean_log_probs(alone))
    # frame 2: each model reads its own branch's memory (which holds the ensemble's frame 1)
    branches = [group[0] for group in ensemble.branches]
    rgb = torch.from_numpy(frames[2]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        each = [b.model.segment(b.model.encode_query(rgb), b.memory.entries(), ensemble.object_ids) for b in branches]
    torch.testing.assert_close(ensemble.step(frames[2]), _mean_log_probs(each))
