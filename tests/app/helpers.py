"""Shared pieces of the app tests: sessions on the shipped model (optionally slowed down, so a
propagation lasts long enough to be interrupted), a served app on a free port, scribbles from
ground truth."""

from __future__ import annotations

import contextlib
import threading
import time

import cv2
import numpy as np

from memvos.app.server import bind, make_server, url_of
from memvos.inference.interactive import InteractiveConfig, InteractiveSession


class SlowModel:
    """The real model, ``delay`` seconds slower per frame it encodes."""

    def __init__(self, model, delay: float) -> None:
        self._model, self._delay = model, delay

    def encode_query(self, *args, **kwargs):
        time.sleep(self._delay)
        return self._model.encode_query(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def session_factory(model, memvos_config, delay: float = 0.0):
    """frames -> InteractiveSession at full size on ``model`` (slowed by ``delay`` s/frame)."""
    config = InteractiveConfig(memory=memvos_config.inference.memory, max_short_side=None)
    used = SlowModel(model, delay) if delay else model
    return lambda frames: InteractiveSession(frames, model=used, config=config)


def inside_line(mask: np.ndarray, margin: int = 3) -> list[list[float]]:
    """A horizontal polyline [[x0, y], [x1, y]] well inside ``mask`` (its longest eroded run)."""
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    eroded = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
    ys = np.flatnonzero(eroded.any(1))
    row = int(ys[len(ys) // 2])
    cols = np.flatnonzero(eroded[row])
    run = max(np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1), key=len)
    return [[float(run[0]), float(row)], [float(run[-1]), float(row)]]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def wait_for(predicate, timeout: float = 20.0, every: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


@contextlib.contextmanager
def served(app):
    """Serve ``app`` with uvicorn on a free local port in a thread; yields the base URL."""
    sock = bind("127.0.0.1", 0)
    server = make_server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=15)
        yield url_of(sock).rstrip("/")
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
