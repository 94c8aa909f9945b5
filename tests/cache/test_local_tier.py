"""L1's store: bounded, swept when full, read without a lock."""

from __future__ import annotations

import threading

from oauth_tai.local_tier import MISS, LocalTier
from oauth_tai.revocation import Revocation
from tests.cache.conftest import Clock, identity


def test_the_store_holds_at_most_maxsize_entries_dropping_the_oldest() -> None:
    clock = Clock()
    tier = LocalTier(100, 0, clock)
    answer = identity(clock.now + 3600)

    for n in range(150):
        tier.put(f"key-{n}", answer, clock.now + 300, None)

    assert len(tier) == 100
    assert tier.get("key-49") is MISS
    assert tier.get("key-50") == answer
    assert tier.get("key-149") == answer


def test_a_full_store_drops_expired_entries_before_live_ones() -> None:
    """A flood of unknown tokens pushes out its own expired answers first."""
    clock = Clock()
    tier = LocalTier(10, 0, clock)
    live = identity(clock.now + 3600)
    tier.put("live", live, clock.now + 300, None)
    for n in range(9):
        tier.put(f"unknown-{n}", None, clock.now + 5, None)

    clock.now += 6
    for n in range(9):
        tier.put(f"later-{n}", None, clock.now + 5, None)

    assert tier.get("live") == live
    assert len(tier) == 10


def test_an_evicted_entry_leaves_no_jti_behind() -> None:
    """A jti revoked after its entry was pushed out evicts nothing else."""
    clock = Clock()
    tier = LocalTier(2, 0, clock)
    answer = identity(clock.now + 3600)
    tier.put("first", answer, clock.now + 300, "jti-1")
    tier.put("second", answer, clock.now + 300, None)
    tier.put("third", answer, clock.now + 300, None)
    tier.put("first", answer, clock.now + 300, None)

    tier.forget(Revocation(jtis=(("jti-1", clock.now + 3600),)))

    assert tier.get("first") == answer
    assert tier.jti_revoked("jti-1")


def test_reads_during_writes_see_whole_entries_or_none() -> None:
    clock = Clock()
    tier = LocalTier(50, 0, clock)
    answer = identity(clock.now + 3600)
    stop = threading.Event()
    seen: list[object] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                for n in range(60):
                    found = tier.get(f"key-{n}")
                    if found is not MISS and found != answer:
                        seen.append(found)
        except BaseException as exc:  # noqa: BLE001 - any failure is the finding
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for round_ in range(200):
        for n in range(60):
            tier.put(f"key-{n}", answer, clock.now + 300, f"jti-{n}")
        tier.forget(Revocation(keys=(f"key-{round_ % 60}",)))
        if round_ % 50 == 0:
            tier.clear()
    stop.set()
    for reader in readers:
        reader.join()

    assert failures == []
    assert seen == []
