"""atomic_path / atomic_dir: output appears only on success, and no temporary is ever left behind."""

from __future__ import annotations

import os
import stat

import pytest

from memvos.data.atomic import atomic_dir, atomic_path


class Boom(RuntimeError):
    pass


def _listing(folder):
    """Every path under ``folder`` (relative, as strings), hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------- atomic_path


def test_atomic_path_success_renames_onto_target(tmp_path):
    target = tmp_path / "out.png"
    with atomic_path(target) as tmp:
        assert tmp != target
        assert tmp.parent == target.parent  # same folder: the rename is atomic
        assert tmp.suffix == ".png"  # writers that pick a format from the suffix still work
        assert not target.exists()  # nothing visible while writing
        tmp.write_bytes(b"payload")
    assert target.read_bytes() == b"payload"
    assert _listing(tmp_path) == ["out.png"]


def test_atomic_path_creates_missing_parents(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("x")
    assert target.read_text() == "x"


def test_atomic_path_failure_leaves_no_output_and_no_temp(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_bytes(b"half written")
        raise Boom()
    assert not target.exists()
    assert _listing(tmp_path) == []


def test_atomic_path_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise Boom()
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["out.txt"]


def test_atomic_path_success_replaces_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert _listing(tmp_path) == ["out.txt"]


def test_atomic_path_when_nothing_is_written(tmp_path):
    # The temporary exists (mkstemp), so an untouched one is renamed as an empty file.
    target = tmp_path / "empty.bin"
    with atomic_path(target):
        pass
    assert target.read_bytes() == b""
    assert _listing(tmp_path) == ["empty.bin"]


def test_atomic_path_output_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        target = tmp_path / "atomic.txt"
        with atomic_path(target) as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


# ---------------------------------------------------------------- atomic_dir


def test_atomic_dir_success_creates_folder(tmp_path):
    target = tmp_path / "masks"
    with atomic_dir(target) as tmp:
        assert tmp != target and tmp.parent == tmp_path and tmp.is_dir()
        assert not target.exists()
        (tmp / "00000.png").write_bytes(b"a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.txt").write_text("b")
    assert (target / "00000.png").read_bytes() == b"a"
    assert (target / "sub" / "x.txt").read_text() == "b"
    assert _listing(tmp_path) == ["masks", "masks/00000.png", "masks/sub", "masks/sub/x.txt"]


def test_atomic_dir_failure_leaves_no_output_and_no_temp(tmp_path):
    target = tmp_path / "masks"
    with pytest.raises(Boom), atomic_dir(target) as tmp:
        (tmp / "00000.png").write_bytes(b"a")
        raise Boom()
    assert not target.exists()
    assert _listing(tmp_path) == []


def test_atomic_dir_merges_into_existing_folder(tmp_path):
    target = tmp_path / "out"
    (target / "1").mkdir(parents=True)
    (target / "keep.txt").write_text("kept")
    (target / "replace.txt").write_text("old")
    (target / "1" / "00000.png").write_text("old frame 0")
    with atomic_dir(target) as tmp:
        (tmp / "replace.txt").write_text("new")
        (tmp / "added.txt").write_text("added")
        (tmp / "1").mkdir()
        (tmp / "1" / "00001.png").write_text("frame 1")
    assert (target / "keep.txt").read_text() == "kept"
    assert (target / "replace.txt").read_text() == "new"
    assert (target / "added.txt").read_text() == "added"
    assert (target / "1" / "00000.png").read_text() == "old frame 0"
    assert (target / "1" / "00001.png").read_text() == "frame 1"
    assert _listing(tmp_path) == ["out", "out/1", "out/1/00000.png", "out/1/00001.png",
                                  "out/added.txt", "out/keep.txt", "out/replace.txt"]


def test_atomic_dir_failure_leaves_existing_folder_untouched(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(Boom), atomic_dir(target) as tmp:
        (tmp / "keep.txt").write_text("new")
        (tmp / "other.txt").write_text("x")
        raise Boom()
    assert (target / "keep.txt").read_text() == "old"
    assert _listing(tmp_path) == ["out", "out/keep.txt"]


def test_atomic_dir_onto_a_file_is_an_error_and_cleans_up(tmp_path):
    target = tmp_path / "out"
    target.write_text("a file")
    with pytest.raises(NotADirectoryError), atomic_dir(target) as tmp:
        (tmp / "x.txt").write_text("x")
    assert target.read_text() == "a file"
    assert _listing(tmp_path) == ["out"]


def test_atomic_dir_new_folder_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain"
        plain.mkdir()
        target = tmp_path / "atomic"
        with atomic_dir(target) as tmp:
            (tmp / "x.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
