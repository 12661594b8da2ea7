"""Bad checkpoints, devices and sizes: one-line errors naming what is wrong, exit status 2,
before any frame is processed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memvos.cli import main
from memvos.data.writers import write_palette_png


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    frames = root / "frames"
    frames.mkdir()
    from PIL import Image

    for t in range(3):
        Image.fromarray(np.full((48, 64, 3), 40 * t, np.uint8)).save(frames / f"{t:05d}.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 10:30] = 1
    write_palette_png(root / "first.png", mask)
    torch.save({"model": {"w": torch.zeros(1000)}, "memvos_config": {}}, root / "last.pt")
    (root / "truncated.pt").write_bytes((root / "last.pt").read_bytes()[:300])
    (root / "text.pt").write_text("hello, not a checkpoint\n")
    return root



def _segment(files, *extra: str) -> int:
    return main(["segment", str(files / "frames"), "--mask", str(files / "first.png"), "--out",
                 str(files / "out"), *extra])


@pytest.mark.parametrize("name, fragment", [
    ("last.pt", "is a training checkpoint, not exported weights: run `memvos export"),
    ("text.pt", "not a safetensors checkpoint"),
    ("missing.safetensors", "checkpoint file not found"),
])
def test_segment_with_a_bad_checkpoint(files, one_line_error, name, fragment):
    assert _segment(files, "--checkpoint", str(files / name)) == 2
    one_line_error(fragment)
    assert not (files / "out").exists()


@pytest.mark.parametrize("device, fragment", [
    ("foo", "'foo' is not a device"),
    ("cuda", "no CUDA GPU is available"),
    ("mps", "memvos runs on cpu or cuda"),
])
def test_segment_with_a_device_it_cannot_use(files, one_line_error, device, fragment):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert _segment(files, "--device", device) == 2
    one_line_error(fragment)


def test_segment_with_absurd_scales(files, one_line_error):
    assert _segment(files, "--scales", "100000") == 2
    one_line_error("from 32 to 4096 pixels")


def test_a_colour_mask_reports_its_mapping_once_on_its_own_line(files, tmp_path, capsys):
    from PIL import Image

    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[10:30, 10:30] = (200, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert main(["segment", str(files / "frames"), "--mask", str(tmp_path / "rgb.png"), "--out",
                 str(tmp_path / "out"), "--config", "training-free-lite0-fast"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").split("\n") if "colour -> id" in line]
    assert len(lines) == 1 and lines[0].startswith("memvos: info: ")  # not glued onto the progress bar
