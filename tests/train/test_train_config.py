"""Training YAMLs that share a base: an ablation sets only what differs."""

from __future__ import annotations

import pytest

from memvos.errors import InputError
from memvos.train.config import deep_merge, load_train_config

from .conftest import tiny_config, write_yaml


def test_deep_merge_merges_mappings_and_replaces_the_rest():
    base = {"data": {"crop": 64, "roots": ["a"]}, "train": {"lr": 1.0}, "out": "x"}
    merged = deep_merge(base, {"data": {"crop": 32}, "out": "y", "model_options": {"aspp": True}})
    assert merged == {"data": {"crop": 32, "roots": ["a"]}, "train": {"lr": 1.0}, "out": "y",
                      "model_options": {"aspp": True}}
    assert base["data"]["crop"] == 64  # the base is not modified


def test_an_ablation_names_its_base_and_overrides_one_switch(tmp_path):
    base = write_yaml(tmp_path / "base.yaml", tiny_config(tmp_path))
    ablation = write_yaml(tmp_path / "ablation.yaml", {"base": base.name, "out": str(tmp_path / "abl"),
                                                       "model_options": {"key_projection": True},
                                                       "train": {"iterations": 7}})
    cfg, parent = load_train_config(ablation), load_train_config(base)
    assert cfg.model_options == {"key_projection": True} and cfg.train.iterations == 7
    assert cfg.train.lr == parent.train.lr and cfg.data == parent.data and cfg.out != parent.out
    assert cfg.name == "ablation"


def test_a_missing_or_looping_base_is_a_one_line_error(tmp_path):
    write_yaml(tmp_path / "a.yaml", {"base": "b.yaml"})
    write_yaml(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(InputError, match="loop"):
        load_train_config(tmp_path / "a.yaml")
    write_yaml(tmp_path / "c.yaml", {"base": "missing.yaml"})
    with pytest.raises(InputError, match="missing.yaml: training config not found"):
        load_train_config(tmp_path / "c.yaml")
