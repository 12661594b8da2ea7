"""Broken training checkpoints given to export, train --init and train --resume: one-line errors."""

from __future__ import annotations

import pytest
import torch

from memvos.cli import main

from .conftest import tiny_config, write_yaml


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    torch.save({"model": {"w": torch.zeros(1000)}, "memvos_config": {}}, root / "last.pt")
    (root / "truncated.pt").write_bytes((root / "last.pt").read_bytes()[:300])
    (root / "text.pt").write_text("hello, not a checkpoint\n")
    return root



@pytest.mark.parametrize("name", ["truncated.pt", "text.pt"])
def test_export_and_train_init_and_resume_with_a_broken_checkpoint(files, tmp_path, one_line_error, name):
    assert main(["export", str(files / name), str(tmp_path / "w.safetensors")]) == 2
    one_line_error("not a readable training checkpoint")
    assert not (tmp_path / "w.safetensors").exists()
    config = write_yaml(tmp_path / "t.yaml", tiny_config(tmp_path))
    assert main(["train", "--config", str(config), "--init", str(files / name)]) == 2
    one_line_error("not a readable training checkpoint")
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    (out / "last.pt").write_bytes((files / name).read_bytes())
    assert main(["train", "--config", str(config), "--resume", "--out", str(out)]) == 2
    one_line_error("not a readable training checkpoint")


def test_export_of_a_pt_file_that_is_not_a_memvos_checkpoint(files, tmp_path, one_line_error):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    assert main(["export", str(tmp_path / "list.pt"), str(tmp_path / "w.safetensors")]) == 2
    one_line_error("not a memvos training checkpoint")


def test_export_re_targets_exported_weights_to_another_stride(tmp_path, one_line_error):
    from memvos.model.factory import FAST_WEIGHTS, load_checkpoint

    fast = tmp_path / "fast.safetensors"
    assert main(["export", str(FAST_WEIGHTS), str(fast)]) == 0  # a plain copy
    assert main(["export", str(fast), str(tmp_path / "s8.safetensors"), "--output-stride", "8"]) == 0
    model16, config16 = load_checkpoint(fast)
    model8, config8 = load_checkpoint(tmp_path / "s8.safetensors")
    assert config16.model["output_stride"] == 16 and config8.model["output_stride"] == 8
    assert config8.read.sigma == 2 * config16.read.sigma  # the same kernel width in pixels
    for key, value in model16.state_dict().items():
        assert torch.equal(model8.state_dict()[key], value), key
    assert main(["export", str(fast), str(fast)]) == 2
    one_line_error("is also an input")
