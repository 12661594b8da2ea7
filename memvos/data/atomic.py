"""Write-then-rename helpers so that a failure never leaves partial output behind.

Temporary outputs are named ``.NAME.<pid>.XXXX.partial[.suffix]`` beside the target: a run that
was killed leaves one behind, and the next run writing the same target removes those whose
process is gone (``remove_stale_partials``). ``check_output`` finds, before any work is done,
the problems that would otherwise surface only when the result is renamed into place.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from memvos.errors import InputError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the temporary outputs of runs that were killed while writing ``path`` (their
    process no longer exists); returns what was removed. Those of running processes stay."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for stem in {path.name, path.stem}:
        for item in path.parent.glob(f".{glob.escape(stem)}.*.partial*"):
            pid = item.name[len(stem) + 2:].split(".", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                if item.is_dir():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)
                removed.append(item)
    return removed


def check_output(path: str | Path, kind: str = "file", overwrite: bool = True,
                 inputs: tuple[str | Path, ...] = ()) -> Path:
    """Refuse, with a one-line error naming the path, an output that cannot be written: a parent
    that is a file, a folder without write permission, a file where a folder is wanted (or the
    reverse), a non-empty folder without ``overwrite``, or one of ``inputs`` (the same file).
    ``kind``: "file" or "folder". Stale partial outputs of killed runs are removed on the way."""
    path = Path(path)
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    for source in inputs:
        if Path(source).exists() and path.exists() and os.path.samefile(source, path):
            raise InputError(path, "is also an input: give another output path")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(path, f"cannot be created: {ancestor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".memvos-write-check.", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise InputError(path, f"cannot write in {ancestor} ({err.strerror or err})") from None
    if kind == "file" and path.is_dir():
        raise InputError(path, "is a folder; give a file name")
    if kind == "folder" and path.exists():
        if not path.is_dir():
            raise InputError(path, "exists and is not a folder")
        if not overwrite and any(path.iterdir()):
            raise InputError(path, "is not empty: pass --overwrite to replace it")
    remove_stale_partials(path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix so that writers that pick a format from the
    extension (Pillow, PyAV) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=f".partial{path.suffix}",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success its files land in ``path``: created, merged into an
    existing folder, or with ``replace`` put in its place (the old folder is removed, so no stale
    file survives).

    On failure the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path}: exists and is not a folder")
        if path.exists() and not replace:
            _merge_into(tmp, path)
            return
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():  # replace: move the old folder aside, the new one in, then delete the old
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial-old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _merge_into(src: Path, dst: Path) -> None:
    """Move every file of ``src`` into ``dst``, replacing files of the same name."""
    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir():
            target.mkdir(exist_ok=True)
            _merge_into(item, target)
        else:
            os.replace(item, target)
