"""The `memvos app` command's arguments and its one-line errors (the server itself is tested
through create_app, never started here)."""

from __future__ import annotations

import pytest

from memvos.cli import build_parser, main

pytest.importorskip("fastapi", reason="the web app needs its extra: pip install -e '.[app]'")


def test_roots_may_be_repeated_or_listed():
    args = build_parser().parse_args(["app", "--root", "a", "b", "--root", "c", "--port", "8000"])
    assert args.root == ["a", "b", "c"] and args.port == 8000 and args.host == "127.0.0.1"
    defaults = build_parser().parse_args(["app"])
    assert defaults.root is None and defaults.port == 7860 and defaults.heartbeat == 5.0


@pytest.mark.parametrize("argv, message", [
    (["app", "--root", "/no/such/folder"], "/no/such/folder: --root is not a folder"),
    (["app", "--port", "70000"], "--port must be in 0..65535"),
    (["app", "--threads", "0"], "--threads must be at least 1"),
    (["app", "--short-side", "8"], "--short-side must be at least 32"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_taken_port_is_a_one_line_error(tmp_path, capsys):
    from memvos.app.server import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert main(["app", "--root", str(tmp_path), "--port", str(sock.getsockname()[1])]) == 2
    finally:
        sock.close()
    assert "choose another --port" in capsys.readouterr().err
