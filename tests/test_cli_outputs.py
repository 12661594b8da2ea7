"""Output paths that cannot be written are refused before any frame is processed, with a
one-line error naming the path; existing results are replaced only with --overwrite; partial
outputs of killed runs are cleaned up by the next run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from memvos.cli import main
from memvos.data.atomic import check_output, remove_stale_partials
from memvos.data.masks import read_mask
from memvos.data.writers import write_palette_png
from memvos.errors import InputError


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory):
    from memvos.data.synthetic import make_synthetic_clip
    from memvos.data.video import write_video

    root = tmp_path_factory.mktemp("outputs")
    clip = make_synthetic_clip(n_frames=4, size=(64, 96), n_objects=1, seed=3)
    write_video(root / "in.mp4", clip.frames, fps=10)
    write_palette_png(root / "first.png", clip.labels[0])
    return root


def _writable(folder: Path) -> bool:
    try:
        tempfile.NamedTemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _segment(root: Path, *extra: str) -> int:
    return main(["segment", str(root / "in.mp4"), "--mask", str(root / "first.png"),
                 "--config", "training-free-lite0-fast", *extra])



@pytest.mark.parametrize("make, out, fragment", [
    (lambda d: (d / "file.txt").write_text("x"), "file.txt", "exists and is not a folder"),
    (lambda d: (d / "file.txt").write_text("x"), "file.txt/masks", "is a file, not a folder"),
    (lambda d: None, "/sys/memvos-not-writable/masks", "cannot write in"),
])
def test_segment_refuses_an_output_folder_it_cannot_write(clip_root, tmp_path, one_line_error, make, out, fragment):
    make(tmp_path)
    target = out if out.startswith("/") else str(tmp_path / out)
    if target.startswith("/sys") and _writable(Path("/sys")):
        pytest.skip("/sys is writable here: no unwritable folder to test with")
    assert _segment(clip_root, "--out", target) == 2
    one_line_error(fragment)


def test_segment_refuses_a_non_empty_folder_unless_overwrite_which_replaces_it(clip_root, tmp_path, one_line_error):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "old-result.png").write_bytes(b"old")
    assert _segment(clip_root, "--out", str(out)) == 2
    one_line_error("--overwrite")
    assert (out / "old-result.png").is_file()  # untouched
    assert _segment(clip_root, "--out", str(out), "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{t:05d}.png" for t in range(4)]  # no stale file left
    assert not list(tmp_path.glob(".*partial*"))


def test_segment_refuses_an_overlay_that_is_a_folder_or_the_input(clip_root, tmp_path, one_line_error):
    (tmp_path / "folder.mp4").mkdir()
    assert _segment(clip_root, "--out", str(tmp_path / "a"), "--overlay", str(tmp_path / "folder.mp4")) == 2
    one_line_error("is a folder")
    before = (clip_root / "in.mp4").read_bytes()
    assert _segment(clip_root, "--out", str(tmp_path / "b"), "--overlay", str(clip_root / "in.mp4")) == 2
    one_line_error("is also an input")
    assert (clip_root / "in.mp4").read_bytes() == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_killed_runs_partial_output_is_removed_by_the_next_run(clip_root, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".masks.{pid}.abcd1234.partial"
    stale.mkdir()
    (stale / "00000.png").write_bytes(b"half")
    live = tmp_path / f".masks.{os.getpid()}.efgh5678.partial"  # a run still going: kept
    live.mkdir()
    assert _segment(clip_root, "--out", str(tmp_path / "masks")) == 0
    assert not stale.exists() and live.exists()
    assert read_mask(tmp_path / "masks" / "00000.png").shape == (64, 96)
    assert remove_stale_partials(tmp_path / "masks") == []


def test_eval_refuses_unwritable_reports_and_zero_workers(tmp_path, one_line_error):
    gt, pred = tmp_path / "gt" / "clip", tmp_path / "pred" / "clip"
    for t in range(3):
        write_palette_png(gt / f"{t:05d}.png", np.ones((8, 8), np.uint8))
        write_palette_png(pred / f"{t:05d}.png", np.ones((8, 8), np.uint8))
    (tmp_path / "file.txt").write_text("x")
    base = ["eval", str(tmp_path / "gt"), str(tmp_path / "pred")]
    assert main([*base, "--json", str(tmp_path / "file.txt" / "r.json")]) == 2
    one_line_error("is a file, not a folder")
    assert main([*base, "--csv", str(tmp_path / "file.txt")]) == 2
    one_line_error("exists and is not a folder")
    assert main([*base, "--json", str(tmp_path)]) == 2
    one_line_error("is a folder")
    assert main([*base, "--workers", "0"]) == 2
    one_line_error("--workers must be at least 1")


def test_check_output_accepts_new_paths_and_writable_folders(tmp_path):
    assert check_output(tmp_path / "new" / "deeper", "folder", overwrite=False) == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(ValueError):
        check_output(tmp_path, "nonsense")
    with pytest.raises(InputError, match="is also an input"):
        (tmp_path / "x.mp4").write_bytes(b"v")
        check_output(tmp_path / "x.mp4", "file", inputs=(tmp_path / "x.mp4",))
