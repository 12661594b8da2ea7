"""Presets, config files and the checkpoint format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from memvos.config import config_from_dict, list_presets, load_config
from memvos.errors import InputError
from memvos.model.factory import build_model, load_checkpoint, load_model, save_checkpoint
from memvos.model.stm import STMNetwork
from memvos.model.training_free import TrainingFreeModel

NETWORKS = Path(__file__).resolve().parents[1] / "configs" / "networks"  # need weights memvos does not ship


def test_every_preset_loads_and_has_its_switches():
    names = list_presets()
    assert {"training-free-lite0", "frozen-key-lite0-fast"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.read.mode in ("stm", "kmn") and cfg.inference.memory.max_frames >= 1
    assert load_config(NETWORKS / "stm-resnet50.yaml").read.mode == "stm"
    assert load_config(NETWORKS / "kmn-lite0.yaml").read.mode == "kmn"
    assert load_config("training-free-lite0").model_type == "training-free"


def test_config_file_errors_name_the_file(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("read:\n  mode: kmn\n  sigmaa: 3\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*sigmaa"):
        load_config(bad_key)
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("read: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml.*YAML"):
        load_config(bad_yaml)
    with pytest.raises(InputError, match="unknown config"):
        load_config("no-such-preset")
    with pytest.raises(ValueError, match="mode"):
        config_from_dict({"read": {"mode": "soft"}})


def test_training_free_preset_builds_without_weights_file():
    model, _cfg = load_model("training-free-lite0")
    assert isinstance(model, TrainingFreeModel) and model.read.config.mode == "kmn"


def test_trained_presets_load_the_weights_memvos_ships():
    from memvos.model.factory import DEFAULT_WEIGHTS, FAST_WEIGHTS, shipped_weights
    from memvos.model.frozen_key import FrozenKeySTM

    assert shipped_weights("frozen-key-lite0") == DEFAULT_WEIGHTS and shipped_weights("training-free-lite0") is None
    fast, cfg = load_model("frozen-key-lite0-fast")
    assert isinstance(fast, FrozenKeySTM) and fast.config.output_stride == 16 and cfg.read.sigma == 4.0
    shipped, _ = load_checkpoint(FAST_WEIGHTS)
    learned = {k: v for k, v in shipped.state_dict().items() if not k.startswith("backbone.")}  # the frozen
    assert learned  # backbone is ImageNet's, and folded for inference (no BatchNorm keys left)
    for key, value in learned.items():
        assert torch.equal(fast.state_dict()[key], value), key

    # the weights carry their config: its inference section is the preset's (processing sizes included)
    from memvos.model.factory import checkpoint_config

    for name, path in (("frozen-key-lite0-fast", FAST_WEIGHTS), ("frozen-key-lite0", DEFAULT_WEIGHTS)):
        carried, preset = checkpoint_config(path).inference, load_config(name).inference
        assert dataclasses.replace(carried, device="cpu") == dataclasses.replace(preset, device="cpu"), name


def test_default_model_depends_on_the_frame_size():
    from memvos.model.factory import (
        DEFAULT_WEIGHTS,
        FAST_WEIGHTS,
        default_interactive_source,
        default_model_source,
    )

    assert default_model_source((480, 854)) == str(FAST_WEIGHTS)  # DAVIS 480p: the stride-16 network
    assert default_model_source((1080, 1920)) == str(FAST_WEIGHTS)  # processed downsized to 480p
    assert default_model_source((240, 432)) == str(FAST_WEIGHTS)  # processed enlarged 2x, to 480p
    assert default_model_source((854, 360)) == str(FAST_WEIGHTS)  # portrait: the short side counts
    assert default_model_source((239, 426)) == str(DEFAULT_WEIGHTS)  # 2x would not reach 480p: stride 8
    assert default_model_source((240, 432), enlarge=False) == str(DEFAULT_WEIGHTS)  # processed at 240 (--scales)
    assert default_model_source(None) == str(FAST_WEIGHTS)  # size unknown: what `memvos segment` runs at 480p
    assert default_interactive_source((480, 854)) == str(FAST_WEIGHTS)
    assert default_interactive_source((240, 432)) == str(FAST_WEIGHTS)  # sessions enlarge as segment does
    assert default_interactive_source((239, 426)) == str(DEFAULT_WEIGHTS)  # 2x would not reach 480p
    assert default_interactive_source((480, 854), max_short_side=300) == str(DEFAULT_WEIGHTS)  # processed at 300
    model, cfg = load_model(None, frame_size=(720, 1280))
    assert model.config.output_stride == 16 and cfg.name == load_checkpoint(FAST_WEIGHTS)[1].name
    assert load_model("frozen-key-lite0")[1].model["output_stride"] == 8


def test_processing_size_downsizes_large_frames_and_enlarges_small_ones_at_most_2x():
    from memvos.inference.core import processing_size

    assert processing_size(1080, 1920, 480) == (480, 853)
    assert processing_size(240, 432, 480) == (240, 432)  # no lower bound: as it is
    assert processing_size(240, 432, 480, 480) == (480, 864)
    assert processing_size(300, 200, 480, 480) == (600, 400)  # at most 2x: the short side stops at 400
    assert processing_size(100, 150, 480, 480, max_upscale=3.0) == (300, 450)
    assert processing_size(480, 854, 480, 480) == (480, 854)


def test_stm_preset_without_checkpoint_is_refused():
    with pytest.raises(InputError, match="checkpoint"):
        load_model(str(NETWORKS / "kmn-lite0.yaml"))


def test_checkpoint_round_trip_fp16(tmp_path):
    cfg = config_from_dict({"model": {"type": "stm", "backbone": "efficientnet-lite0", "decoder_dim": 16,
                                      "pretrained": False}, "read": {"mode": "kmn", "sigma": 3.0}})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = tmp_path / "w.safetensors"
    save_checkpoint(model, cfg, path)
    loaded, loaded_cfg = load_checkpoint(path)
    assert isinstance(loaded, STMNetwork)
    assert loaded_cfg.read.sigma == 3.0 and loaded_cfg.model["decoder_dim"] == 16
    assert loaded_cfg.inference.memory == cfg.inference.memory  # the memory policy survives the round trip
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.half().to(value.dtype), rtol=0, atol=0)
    assert path.stat().st_size < sum(v.numel() * 2 for v in model.state_dict().values()) + 200_000  # fp16


def test_bad_checkpoint_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk"):
        load_checkpoint(junk)
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_runs_with_what_the_package_ships(name):
    """`memvos segment --config NAME` needs nothing but the installed package (weights included)."""
    import numpy as np

    from memvos.inference.core import InferenceCore

    model, config = load_model(name)
    core = InferenceCore(model, config.inference)
    frame = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 1
    core.step(frame, mask)
    probs = core.step(frame)
    assert probs.shape == (2, 64, 96) and torch.allclose(probs.sum(0), torch.ones(64, 96), atol=1e-3)
