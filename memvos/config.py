"""Configuration: YAML presets (``memvos/configs/*.yaml``, also reachable as ``configs/``)
turned into the dataclasses of the model, the memory read and the engine.

Every seed idea is one switch: ``model.type`` (stm | frozen-key-stm | training-free), ``read.mode``
(stm | kmn), ``read.top_k``, ``read.sigma``, ``inference.flip``, ``inference.scales``...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memvos.errors import InputError
from memvos.inference.core import InferenceConfig
from memvos.inference.memory import MemoryPolicy
from memvos.model.memory_read import ReadConfig

PRESET_DIR = Path(__file__).parent / "configs"
MODEL_TYPES = ("stm", "frozen-key-stm", "training-free")


@dataclass
class MemvosConfig:
    """A whole preset: which model, how it reads memory, how the engine runs it."""

    model: dict[str, Any] = field(default_factory=lambda: {"type": "training-free"})
    read: ReadConfig = field(default_factory=ReadConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)  # holds the memory policy
    name: str = "custom"

    @property
    def model_type(self) -> str:
        return self.model.get("type", "stm")

    def to_dict(self) -> dict[str, Any]:
        inference = dataclasses.asdict(self.inference)
        memory = inference.pop("memory")
        inference["scales"] = list(inference["scales"])
        return {"name": self.name, "model": dict(self.model), "read": dataclasses.asdict(self.read),
                "memory": memory, "inference": inference}


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> MemvosConfig:
    """A preset name (``frozen-key-lite0-fast``) or a YAML file path -> ``MemvosConfig``."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise InputError(None, f"unknown config {name_or_path!r}; presets: {', '.join(list_presets())}")
    if not path.is_file():
        raise InputError(path, "config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"invalid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise InputError(path, "a config must be a mapping of sections (model, read, memory, inference)")
    try:
        return config_from_dict(data, default_name=path.stem)
    except (TypeError, ValueError) as err:
        raise InputError(path, str(err)) from None


def config_from_dict(data: dict[str, Any], default_name: str = "custom") -> MemvosConfig:
    """Build a config from plain data (a YAML file, or a checkpoint's stored config)."""
    unknown = set(data) - {"name", "model", "read", "memory", "inference"}
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)}")
    model = dict(data.get("model") or {})
    model.setdefault("type", "stm")
    if model["type"] not in MODEL_TYPES:
        raise ValueError(f"model.type must be one of {MODEL_TYPES}, got {model['type']!r}")
    read = _make(ReadConfig, data.get("read"), "read")
    memory = _make(MemoryPolicy, data.get("memory"), "memory")
    inference_data = dict(data.get("inference") or {})
    if "scales" in inference_data:
        inference_data["scales"] = tuple(inference_data["scales"] or (None,))
    if isinstance(inference_data.get("reid"), dict):  # re-identification thresholds (or null: off)
        from memvos.inference.reid import ReidConfig

        reid = dict(inference_data["reid"])
        if "stable_area" in reid:
            reid["stable_area"] = tuple(reid["stable_area"])
        inference_data["reid"] = _make(ReidConfig, reid, "inference.reid")
    inference = _make(InferenceConfig, {**inference_data, "memory": memory}, "inference")
    return MemvosConfig(model=model, read=read, inference=inference, name=data.get("name", default_name))


def _make(cls, values: dict[str, Any] | None, section: str):
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown key(s) in section {section!r}: {sorted(unknown)} (known: {sorted(names)})")
    return cls(**values)
