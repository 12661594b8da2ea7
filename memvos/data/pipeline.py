"""Pipelined I/O: frames decoded ahead of the network and results written behind it, each on a
thread of its own with a bounded queue, so the network rarely waits for the disk and memory
stays flat (at most ``depth`` items in flight on either side).

JPEG/PNG decoding and encoding (Pillow, OpenCV, PyAV) and the network (PyTorch) release the
GIL, so the threads overlap for real on several cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self, TypeVar

T = TypeVar("T")

_END = object()
_POLL_SECONDS = 0.1


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate ``items`` on a background thread, at most ``depth`` ahead of the consumer.

    An exception raised while producing an item is raised here, in the consumer, at that item's
    place; leaving the loop early (break, exception) stops the producer and waits for it.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(q, (item, None), stop):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            _put(q, (None, err), stop)
            return
        _put(q, (_END, None), stop)

    thread = threading.Thread(target=produce, name="memvos-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundWriter:
    """Runs write jobs in submission order on one thread behind the caller.

    ``submit`` blocks while ``depth`` jobs are waiting (memory stays bounded). The first job that
    fails stops the rest; its exception is raised by the next ``submit`` or by ``close``. Use it
    as a context manager: leaving the block normally waits for every job; leaving it with an
    exception drops the jobs not yet run.
    """

    def __init__(self, depth: int = 8) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="memvos-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _END:
                return
            if self._error is not None or self._stop.is_set():
                continue  # drain without running: a job failed or the caller gave up
            fn, args = job
            try:
                fn(*args)
            except BaseException as err:  # noqa: BLE001 - raised in the caller's thread
                self._error = err

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; raises the error of an earlier job that failed."""
        self._raise_if_failed()
        if not self._thread.is_alive():
            raise RuntimeError("the writer is closed")
        _put(self._queue, (fn, args), self._stop)

    def close(self, cancel: bool = False) -> None:
        """Wait for the queued jobs (or drop them when ``cancel``), then raise a job's error."""
        if cancel:
            self._stop.set()
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if not cancel:
            self._raise_if_failed()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)
