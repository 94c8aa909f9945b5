"""Tallies: lock-free counts on the request path that add up exactly."""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.connection import Connection

from prometheus_client import CollectorRegistry, Counter

from oauth_tai.tally import FLUSH_SECONDS, FlushFirst, Tally


def _counter(*, flush_first: bool = True) -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry()
    if flush_first:
        registry.register(FlushFirst())
    return registry, Counter("tally_test", "A test counter.", registry=registry)


def _value(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("tally_test_total") or 0.0


def test_counts_from_many_threads_add_up_exactly() -> None:
    registry, counter = _counter()
    tally = Tally(counter)
    start = threading.Barrier(8)

    def count() -> None:
        start.wait()
        for _ in range(20_000):
            tally.inc()

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert _value(registry) == 160_000
    # Flushing again adds nothing that was added already.
    tally.flush()
    assert _value(registry) == 160_000


def test_a_collection_sees_counts_made_just_before_it() -> None:
    registry, counter = _counter()
    tally = Tally(counter)

    for expected in range(1, 4):
        tally.inc()
        assert _value(registry) == expected


def test_counts_of_finished_threads_stay_counted() -> None:
    registry, counter = _counter()
    tally = Tally(counter)

    for _ in range(50):
        thread = threading.Thread(target=tally.inc)
        thread.start()
        thread.join()

    assert _value(registry) == 50


def test_flushing_while_counting_loses_and_repeats_nothing() -> None:
    """Each flush takes a number from the count too; none of them counts."""
    registry, counter = _counter()
    tally = Tally(counter)
    done = threading.Event()

    def flush_often() -> None:
        while not done.is_set():
            tally.flush()

    flusher = threading.Thread(target=flush_often)
    flusher.start()
    for _ in range(50_000):
        tally.inc()
    done.set()
    flusher.join()

    assert _value(registry) == 50_000


def test_counts_reach_the_counter_without_a_collection() -> None:
    """Another process's /metrics reads the counter, not this tally."""
    registry, counter = _counter(flush_first=False)
    tally = Tally(counter)
    tally.inc()
    tally.inc()

    deadline = time.monotonic() + 3 * FLUSH_SECONDS
    while _value(registry) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _value(registry) == 2


def _count_in_child(
    tally: Tally, registry: CollectorRegistry, answer: Connection
) -> None:
    before = registry.get_sample_value("tally_test_total")
    tally.inc()
    tally.flush()
    answer.send((before, registry.get_sample_value("tally_test_total")))


def test_a_forked_child_reports_only_its_own_counts() -> None:
    """The parent's counts not yet flushed are the parent's to report."""
    registry, counter = _counter(flush_first=False)
    tally = Tally(counter)
    for _ in range(5):
        tally.inc()

    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=_count_in_child, args=(tally, registry, send)
    )
    child.start()
    child.join(timeout=30)

    before, after = receive.recv()
    assert after - before == 1
    tally.flush()
    assert _value(registry) == 5
