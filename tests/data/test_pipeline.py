"""Read-ahead and write-behind threads: order, bounded queues, errors where they belong."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from memvos.data.pipeline import BackgroundWriter, prefetch


def test_prefetch_yields_every_item_in_order():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))


def test_prefetch_runs_at_most_depth_ahead():
    produced = []

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=4)
    assert next(stream) == 0
    time.sleep(0.3)  # plenty of time for the producer to run ahead if it could
    assert len(produced) <= 1 + 4 + 1  # the item consumed, a full queue, one waiting to be put
    stream.close()


def test_prefetch_raises_the_producers_error_at_its_place():
    def items():
        yield 1
        yield 2
        raise OSError("frame 3 is corrupt")

    got = []
    with pytest.raises(OSError, match="frame 3"):
        for item in prefetch(items(), depth=2):
            got.append(item)  # noqa: PERF402 - the loop must stop at the error
    assert got == [1, 2]


def test_leaving_a_prefetch_loop_early_stops_the_producer():
    def items():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    for item in prefetch(items(), depth=2):
        if item == 5:
            break
    assert threading.active_count() == before  # the thread has been joined


def test_writer_runs_jobs_in_order_and_close_waits_for_them():
    done = []
    with BackgroundWriter(depth=2) as writer:
        for i in range(20):
            writer.submit(lambda k: (time.sleep(0.001), done.append(k)), i)
    assert done == list(range(20))


def test_writer_error_reaches_the_caller_and_stops_later_jobs():
    done = []

    def job(k):
        if k == 3:
            raise OSError("disk full")
        done.append(k)

    writer = BackgroundWriter(depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(50):
            writer.submit(job, i)
        writer.close()
    writer.close(cancel=True)
    assert done == [0, 1, 2]


def test_writer_leaving_with_an_exception_drops_the_queued_jobs():
    done, started, gate = [], threading.Event(), threading.Event()

    def job(k):
        started.set()
        gate.wait(5)
        done.append(k)

    threading.Timer(0.2, gate.set).start()  # the first job finishes after the caller has given up
    with pytest.raises(KeyError), BackgroundWriter(depth=8) as writer:
        for i in range(5):
            writer.submit(job, i)
        assert started.wait(5)
        raise KeyError("caller failed")
    assert done == [0]  # only the job already running when the caller gave up


def test_writer_keeps_each_submitted_array_as_it_was():
    """The caller may reuse nothing it has handed over; the writer sees each array as submitted."""
    seen = []
    with BackgroundWriter(depth=4) as writer:
        for i in range(10):
            writer.submit(lambda a: seen.append(int(a.sum())), np.full((4, 4), i))
    assert seen == [16 * i for i in range(10)]
