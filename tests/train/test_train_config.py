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


def test_data_paths_come_from_the_data_root_option(tmp_path, monkeypatch):
    data = tiny_config(tmp_path)
    data["data"]["roots"] = ["$DATA_ROOT/static/ecssd", "$DATA_ROOT/static/coco"]
    path = write_yaml(tmp_path / "stage.yaml", data)
    monkeypatch.delenv("MEMVOS_DATA_ROOT", raising=False)
    with pytest.raises(InputError, match=r"stage\.yaml: .*pass --data-root DIR"):
        load_train_config(path)
    assert load_train_config(path, "/mnt/data").data.roots == ["/mnt/data/static/ecssd", "/mnt/data/static/coco"]
    monkeypatch.setenv("MEMVOS_DATA_ROOT", "/env/data")
    assert load_train_config(path).data.roots[0] == "/env/data/static/ecssd"


def test_every_shipped_recipe_reads_its_data_from_the_data_root():
    from pathlib import Path

    for path in (Path(__file__).resolve().parents[2] / "configs" / "train").glob("*.yaml"):
        settings = [line.split("#")[0] for line in path.read_text().splitlines()]
        assert not any("../shared" in line for line in settings), path.name
        assert any("$DATA_ROOT" in line or line.startswith("base:") for line in settings), path.name


def test_paste_needs_cached_static_clips(tmp_path):
    data = tiny_config(tmp_path)
    data["data"]["paste"] = 0.5
    with pytest.raises(InputError, match="data.paste .* needs data.feature_cache"):
        load_train_config(write_yaml(tmp_path / "pixels.yaml", data))
    data["data"]["feature_cache"] = str(tmp_path / "cache")
    data["data"]["cache_short_side"] = max(data["data"].get("crop", 384), 384)
    assert load_train_config(write_yaml(tmp_path / "cached.yaml", data)).data.paste == 0.5
    data["data"]["paste"] = 2.0
    with pytest.raises(InputError, match=r"data.paste must be in \[0, 1\]"):
        load_train_config(write_yaml(tmp_path / "bad.yaml", data))
