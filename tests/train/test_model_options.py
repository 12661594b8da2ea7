"""Training configs that switch model options over a preset (``model_options``), the issue-7
ablation rows, and fine-tuning a model with the instance-aware head from weights without it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from memvos.config import config_from_dict
from memvos.errors import InputError
from memvos.inference.core import InferenceCore
from memvos.model.factory import build_model, load_checkpoint, save_checkpoint
from memvos.train.config import load_train_config, train_config_from_dict
from memvos.train.trainer import Trainer, load_initial_weights, model_config

from .conftest import tiny_config

REPO = Path(__file__).resolve().parents[2]
ROWS = {  # issue 7 ablation: config -> the instance-aware head's switches
    "lgdk-ablation-base": {},
    "lgdk-local": {"local_kernel": True},
    "lgdk-global": {"global_kernel": True},
    "lgdk-both": {"local_kernel": True, "global_kernel": True},
    "lgdk-both-aspp": {"local_kernel": True, "global_kernel": True, "aspp": True},
    "lgdk-both-replace": {"local_kernel": True, "global_kernel": True, "kernel_mode": "replace"},
}


def test_model_options_are_set_over_the_preset():
    data = {"model": "frozen-key-lite0", "model_options": {"aspp": True, "local_kernel": True},
            "data": {"kind": "video", "roots": ["x"]}}
    config = model_config(train_config_from_dict(data))
    assert config.model["aspp"] is True and config.model["local_kernel"] is True
    assert config.model["value_dim"] == 64 and config.read.mode == "kmn"  # the rest is the preset's
    with pytest.raises(TypeError, match="model_options"):
        train_config_from_dict({**data, "model_options": ["aspp"]})


def test_an_unknown_model_option_is_a_one_line_error(tmp_path):
    data = tiny_config(tmp_path)
    data["model_options"] = {"aspp_rates": [1, 2]}
    with pytest.raises(InputError, match="aspp_rates"):
        Trainer(train_config_from_dict(data))


def _frames() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = np.zeros((48, 64), np.uint8)
    mask[8:30, 6:30] = 1
    mask[26:44, 36:60] = 2
    return rng.integers(0, 255, (3, 48, 64, 3), dtype=np.uint8), mask


def _run(model, config, frames, mask) -> list[torch.Tensor]:
    core = InferenceCore(model, config.inference)
    return [core.step(f, mask if t == 0 else None) for t, f in enumerate(frames)]


def test_ablation_rows_share_a_recipe_and_start_from_the_shipped_model():
    stage2 = load_train_config(REPO / "configs" / "train" / "stage2-davis.yaml", "DATA")
    shipped = load_checkpoint(REPO / "memvos/weights/memvos-default.safetensors")
    frames, mask = _frames()
    expected = _run(*shipped, frames, mask)
    base = load_train_config(REPO / "configs" / "train" / "lgdk-ablation-base.yaml", "DATA")
    for name, switches in ROWS.items():
        cfg = load_train_config(REPO / "configs" / "train" / f"{name}.yaml", "DATA")
        assert cfg.init == "memvos/weights/memvos-default.safetensors" and cfg.out == f"runs/{name}"
        assert cfg.train == base.train, name  # the same budget and optimiser for every row
        assert cfg.data == stage2.data and cfg.validate == replace(stage2.validate, every=base.validate.every), name
        config = model_config(cfg)
        for key in ("local_kernel", "global_kernel", "aspp"):
            assert bool(config.model.get(key, False)) == bool(switches.get(key, False)), (name, key)
        assert config.model.get("kernel_mode", "add") == switches.get("kernel_mode", "add"), name
        model = build_model(config, pretrained=False)
        load_initial_weights(model, str(REPO / cfg.init))
        got = _run(model.eval(), config, frames, mask)
        exact = switches.get("kernel_mode", "add") == "add"
        for a, b in zip(got, expected):  # every row starts as the shipped model
            torch.testing.assert_close(a, b, **({"rtol": 0, "atol": 0} if exact else {"rtol": 1e-4, "atol": 1e-5}))


def test_fine_tuning_the_head_from_weights_without_it_exports_a_model_that_carries_it(tmp_path, caplog):
    data = tiny_config(tmp_path, iterations=2, checkpoint_every=2)
    base = build_model(config_from_dict(data["model"]), pretrained=False)
    init = tmp_path / "base.safetensors"
    save_checkpoint(base, config_from_dict(data["model"]), init)
    data["init"] = str(init)
    data["model_options"] = {"local_kernel": True, "global_kernel": True, "aspp": True}
    with caplog.at_level("INFO", logger="memvos.train.trainer"):
        final = Trainer(train_config_from_dict(data)).run()
    assert "decoder.kernel.fc.4.weight" in caplog.text and "aspp.project.weight" in caplog.text
    model, config = load_checkpoint(final)
    assert config.model["local_kernel"] and config.model["global_kernel"] and config.model["aspp"]
    assert model.decoder.kernel is not None and model.aspp is not None and model.uses_instance_stats
    frames, mask = _frames()
    out = _run(model, config, frames, mask)
    assert out[-1].shape == (3, 48, 64) and torch.isfinite(out[-1]).all()
