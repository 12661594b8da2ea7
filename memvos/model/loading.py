"""Loading models the way the command line does: ensembles of checkpoints or a preset, read
overrides, and test-time scales. Torch is imported only when a model is loaded, so that
``memvos --help`` stays fast."""

from __future__ import annotations

import dataclasses

from memvos.errors import InputError

MAX_SCALE = 4096  # processing short sides above this would need tens of GB (a typo, not a wish)


def parse_scales(text: str | None) -> tuple[int, ...] | None:
    """``"480,600"`` -> (480, 600): test-time short sides (None when not given)."""
    if text is None:
        return None
    try:
        scales = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise InputError(None, f"--scales takes short-side sizes like 480,600, not {text!r}") from None
    if not scales or min(scales) < 32 or max(scales) > MAX_SCALE:
        raise InputError(None, f"--scales takes short-side sizes from 32 to {MAX_SCALE} pixels, not {text!r}")
    return scales


def load_models(checkpoints: list[str] | None, config_name: str | None, device: str,
                backbone_weights: str | None = None, precision: str | None = None,
                frame_size: tuple[int, int] | None = None, enlarge: bool = True):
    """Models and the config that drives the engine: checkpoints (an ensemble if several) or a
    preset, else the best shipped model for frames of ``frame_size`` (H, W; ``enlarge`` False: frames
    processed at exactly that size, as with ``--scales``); ``precision``
    overrides the config's ``inference.precision``."""
    from memvos.model.factory import load_model

    if checkpoints and (config_name or backbone_weights):
        raise InputError(None, "give --checkpoint (the weights carry their config) or --config, not both")
    if backbone_weights:
        loaded = [load_model(config_name, device, backbone_weights=backbone_weights, precision=precision)]
    else:
        loaded = [load_model(source, device, precision=precision, frame_size=frame_size, enlarge=enlarge)
                  for source in (checkpoints or [config_name])]
    return [model for model, _ in loaded], loaded[0][1]


def override_read(models: list, **changes) -> None:
    """Set read switches (``mode``, ``argmax_stride``...) on every model; ``None`` values are
    left as the models' configs have them (the command-line flags not given)."""
    given = {k: v for k, v in changes.items() if v is not None}
    for model in models:
        model.read.config = dataclasses.replace(model.read.config, **given)
