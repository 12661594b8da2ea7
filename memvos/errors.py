"""Errors that reach the user as one line: the file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input (file, folder or argument); ``str()`` is a one-line message."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        message = problem if path is None else f"{path}: {problem}"
        super().__init__(" ".join(message.split()))
