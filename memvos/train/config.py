"""Training configuration: one YAML file per stage (``configs/train/<stage>.yaml``)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memvos.errors import InputError

STAGE_KINDS = ("static", "video")


@dataclass
class DataSpec:
    kind: str = "static"  # static: clips from images (stage 0); video: DAVIS / YouTube-VOS (stage 2)
    roots: list[str] = field(default_factory=list)
    crop: int = 384
    max_objects: int = 3
    hide_and_seek: bool = True  # static: KMN's Hide-and-Seek (off for the ablation)
    hide_max: float = 0.5  # static: hiding probability reached at the end of the stage
    hide_fill: str = "image"  # static: hidden cells show another image's content ('image') or the mean colour
    skip: list[int] = field(default_factory=lambda: [5, 25, 5])  # video: max frame skip curriculum
    split: str | None = "train"  # video: ImageSets/<split>.txt (DAVIS)
    exclude_last: int = 0  # video: hold out the last N sequences of the split
    interaction_prior: str = "grabcut"  # interactive models: the simulated round's prior ('grabcut' or 'paint')
    plain_fraction: float = 0.0  # interactive models: share of clips given a plain mask (no strokes), as in stage 2
    exclude_split: str | None = None  # video: leave out a split of memvos.train.splits (e.g. 'validation')
    feature_cache: str | None = None  # folder: make clips from cached backbone features (memvos.train.feature_cache)
    cache_short_side: int = 384  # feature cache: images and frames resized to this short side
    scale: bool = True  # feature cache, video: scale clips by up to 1.25 (else aligned crops only)
    static_roots: list[str] = field(default_factory=list)  # feature cache, video: static images mixed in ...
    static_fraction: float = 0.0  # ... as this share of the clips
    paste: float = 0.0  # feature cache, static: share of clips given another image's objects (copy-paste)


@dataclass
class OptimSpec:
    iterations: int = 2000
    batch_size: int = 4  # clips per process and iteration
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup: int = 100  # linear learning-rate warm-up, then cosine decay
    min_lr_ratio: float = 0.05
    clip_grad: float = 1.0
    bootstrap_warmup: int = 500  # plain cross-entropy before, hardest `bootstrap_top` pixels after
    bootstrap_top: float = 0.15
    seed: int = 1
    checkpoint_every: int = 100
    snapshots: list[int] = field(default_factory=list)  # iterations whose weights are also exported, to average
    log_every: int = 10
    device: str = "auto"  # auto: CUDA when available
    threads: int | None = None  # torch CPU threads (None: torch's default)


@dataclass
class ValidateSpec:
    every: int = 0  # iterations between validations (0: never)
    root: str | None = None  # DAVIS-layout root
    split: str | None = "train"
    sequences: list[str] = field(default_factory=list)  # explicit list, or ...
    last: int = 0  # ... the last N sequences of the split (the held-out ones)
    max_frames: int = 30  # frames per sequence (validation must stay cheap)
    short_side: int = 240


@dataclass
class TrainConfig:
    model: str | dict[str, Any] = "frozen-key-lite0"  # a memvos preset name, YAML file, or mapping
    model_options: dict[str, Any] = field(default_factory=dict)  # set over the model section (e.g. aspp: true)
    init: str | None = None  # weights to start from: an exported .safetensors or a training .pt
    out: str = "runs/train"
    data: DataSpec = field(default_factory=DataSpec)
    train: OptimSpec = field(default_factory=OptimSpec)
    validate: ValidateSpec = field(default_factory=ValidateSpec)
    name: str = "train"


def _section(cls, values: Any, section: str):
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise TypeError(f"section {section!r} must be a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown key(s) in section {section!r}: {sorted(unknown)} (known: {sorted(names)})")
    return cls(**values)


def train_config_from_dict(data: dict[str, Any], name: str = "train") -> TrainConfig:
    unknown = set(data) - {"model", "model_options", "init", "out", "data", "train", "validate", "name"}
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)}")
    options = data.get("model_options") or {}
    if not isinstance(options, dict):
        raise TypeError("section 'model_options' must be a mapping (model option: value)")
    cfg = TrainConfig(model=data.get("model", "frozen-key-lite0"), model_options=dict(options), init=data.get("init"),
                      out=str(data.get("out", f"runs/{name}")), data=_section(DataSpec, data.get("data"), "data"),
                      train=_section(OptimSpec, data.get("train"), "train"),
                      validate=_section(ValidateSpec, data.get("validate"), "validate"), name=data.get("name", name))
    if cfg.data.kind not in STAGE_KINDS:
        raise ValueError(f"data.kind must be one of {STAGE_KINDS}, got {cfg.data.kind!r}")
    if cfg.data.interaction_prior not in ("grabcut", "paint"):
        raise ValueError(f"data.interaction_prior must be 'grabcut' or 'paint', got {cfg.data.interaction_prior!r}")
    if not 0.0 <= cfg.data.plain_fraction <= 1.0:
        raise ValueError(f"data.plain_fraction must be in [0, 1], got {cfg.data.plain_fraction!r}")
    if cfg.data.exclude_split is not None:
        from memvos.train.splits import SPLITS

        if cfg.data.exclude_split not in SPLITS:
            raise ValueError(f"data.exclude_split must be one of {sorted(SPLITS)}, got {cfg.data.exclude_split!r}")
    if not 0.0 <= cfg.data.paste <= 1.0:
        raise ValueError(f"data.paste must be in [0, 1], got {cfg.data.paste!r}")
    if cfg.data.paste > 0 and not (cfg.data.feature_cache and cfg.data.kind == "static"):
        raise ValueError("data.paste pastes cached features: it needs data.feature_cache and data.kind: static")
    if cfg.data.feature_cache and cfg.data.cache_short_side < cfg.data.crop:
        raise ValueError(f"data.cache_short_side ({cfg.data.cache_short_side}) must be at least data.crop ({cfg.data.crop})")
    if not cfg.data.roots:
        raise ValueError("data.roots is empty: give the image folders (static) or the dataset root (video)")
    if cfg.train.iterations < 1 or cfg.train.batch_size < 1 or cfg.train.checkpoint_every < 1:
        raise ValueError("train.iterations, train.batch_size and train.checkpoint_every must be >= 1")
    if any(not 1 <= n <= cfg.train.iterations for n in cfg.train.snapshots):
        raise ValueError(f"train.snapshots must be iterations from 1 to {cfg.train.iterations}, got {cfg.train.snapshots}")
    return cfg


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` set over ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


DATA_ROOT_TOKEN = "$DATA_ROOT"  # in training YAMLs: the folder given by --data-root (or MEMVOS_DATA_ROOT)
DATA_ROOT_ENV = "MEMVOS_DATA_ROOT"


def read_yaml_text(path: Path, data_root: str | Path | None = None) -> str:
    """A training YAML's text with ``$DATA_ROOT`` replaced by ``data_root`` (default: the
    ``MEMVOS_DATA_ROOT`` environment variable); an error if it is needed and not given."""
    text = path.read_text()
    if DATA_ROOT_TOKEN not in text:
        return text
    root = data_root or os.environ.get(DATA_ROOT_ENV)
    if not root:
        raise ValueError(f"its data paths start with {DATA_ROOT_TOKEN}: pass --data-root DIR "
                         f"(the folder holding davis2016-train/, static/...) or set {DATA_ROOT_ENV}")
    return text.replace(DATA_ROOT_TOKEN, str(Path(root)))


def _read_mapping(path: Path, seen: tuple[Path, ...] = (), data_root: str | Path | None = None) -> dict[str, Any]:
    """A training YAML as a mapping, with its ``base:`` file (relative to it) merged under it."""
    if not path.is_file():
        raise InputError(path, "training config not found")
    data = yaml.safe_load(read_yaml_text(path, data_root)) or {}
    if not isinstance(data, dict):
        raise TypeError("a training config must be a mapping (model, init, out, data, train, validate)")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = (path.parent / str(base)).resolve()
    if base_path in seen:
        raise ValueError(f"base files form a loop through {base_path.name}")
    return deep_merge(_read_mapping(base_path, (*seen, path.resolve()), data_root), data)


def load_train_config(path: str | Path, data_root: str | Path | None = None) -> TrainConfig:
    """A training YAML file -> ``TrainConfig`` (one-line error naming the file on bad input). A file
    may name a ``base:`` file (relative path) and set only what differs from it (an ablation)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "training config not found")
    try:
        return train_config_from_dict(_read_mapping(path, data_root=data_root), name=path.stem)
    except yaml.YAMLError as err:
        raise InputError(path, f"invalid YAML ({' '.join(str(err).split())})") from None
    except (TypeError, ValueError) as err:
        raise InputError(path, str(err)) from None


def data_kind(path: str | Path) -> str | None:
    """``data.kind`` of a training YAML (``reid`` and ``interaction`` stages have their own
    loaders), or None when it cannot be read."""
    try:
        raw = yaml.safe_load(Path(path).read_text().replace(DATA_ROOT_TOKEN, "data")) or {}
        return (raw.get("data") or {}).get("kind") if isinstance(raw, dict) else None
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def snapshot_path(out: Path, iteration: int) -> Path:
    """Where a run exports its weights at a ``train.snapshots`` iteration."""
    return out / f"snapshot-{iteration}.safetensors"
