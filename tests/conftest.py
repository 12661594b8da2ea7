"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def one_line_error(capsys) -> Callable[[str], str]:
    """Checks that the command printed exactly one line, `memvos: error: ...`, holding ``fragment``."""

    def check(fragment: str) -> str:
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("memvos: error: ") and fragment in err, err
        return err

    return check
