"""Concurrent first uses of one token make one provider call.

Counted with a gate instead of timings: the provider holds every call it
gets until the test has seen each other request waiting (on the
in-process flight, or on the fleet-wide lock), then lets them all go.
If single-flight were broken, the other requests would reach the
provider instead of waiting, and the wait for them would time out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from oauth_tai.cache import TokenCache
from oauth_tai.errors import ProviderUnavailable
from tests.cache.conftest import (
    CountingValidator,
    Grant,
    Process,
    Spawn,
    eventually,
)
from tests.conftest import free_port

REQUESTS = 16


def run_at_once(
    requests: list[Callable[[], int]], released: Callable[[], bool]
) -> list[int]:
    """Start every request behind one barrier; return their statuses in order.

    ``released`` is polled until it says the gate may open (it opens it).
    """
    barrier = threading.Barrier(len(requests))

    def go(request: Callable[[], int]) -> int:
        barrier.wait()
        return request()

    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(go, request) for request in requests]
        eventually(released)
        return [future.result() for future in futures]


def test_concurrent_first_uses_in_one_process_make_one_call(
    grant: Grant, spawn: Spawn
) -> None:
    counting = CountingValidator(grant.provider.store, gated=True)
    web = spawn(counting)
    token = grant.issue()
    key = web.cache.key(token)

    def everyone_waits() -> bool:
        if counting.calls == 1 and web.middleware.flights.waiters(key) == REQUESTS - 1:
            counting.gate.set()
        return counting.gate.is_set()

    statuses = run_at_once([lambda: web.status(token)] * REQUESTS, everyone_waits)

    assert statuses == [200] * REQUESTS
    assert counting.calls == 1


def test_a_failure_is_shared_by_the_waiting_requests(
    grant: Grant, spawn: Spawn
) -> None:
    """The leader's outage answers its followers: one call, all 503."""

    class Down:
        def introspect(self, token: str) -> None:
            raise ProviderUnavailable("connection refused")

    counting = CountingValidator(Down(), gated=True)  # type: ignore[arg-type]
    web = spawn(counting)
    token = grant.issue()
    key = web.cache.key(token)

    def everyone_waits() -> bool:
        if counting.calls == 1 and web.middleware.flights.waiters(key) == REQUESTS - 1:
            counting.gate.set()
        return counting.gate.is_set()

    statuses = run_at_once([lambda: web.status(token)] * REQUESTS, everyone_waits)

    assert statuses == [503] * REQUESTS
    assert counting.calls == 1


def test_concurrent_first_uses_across_processes_make_one_call(
    grant: Grant, spawn: Spawn, redis_url: str, redis_prefix: str
) -> None:
    """Four processes sharing Redis, four requests each: one provider call."""
    counting = CountingValidator(grant.provider.store, gated=True)
    fleet = [spawn(counting, redis_url, redis_prefix) for _ in range(4)]
    token = grant.issue()

    def others_wait_on_the_lock() -> bool:
        waiting = sum(each.cache.lock_waits for each in fleet)
        if counting.calls == 1 and waiting == len(fleet) - 1:
            counting.gate.set()
        return counting.gate.is_set()

    requests = [lambda each=each: each.status(token) for each in fleet] * 4
    statuses = run_at_once(requests, others_wait_on_the_lock)

    assert statuses == [200] * len(requests)
    assert counting.calls == 1
    assert sum(each.cache.lock_waits for each in fleet) == len(fleet) - 1


def test_a_lock_left_without_an_answer_falls_back_to_a_direct_call(
    grant: Grant, spawn: Spawn, redis_url: str, redis_prefix: str
) -> None:
    """A process that took the lock and died leaves no answer: ask anyway."""
    counting = CountingValidator(grant.provider.store)
    web = spawn(counting, redis_url, redis_prefix)
    crashed: Process = spawn(counting, redis_url, redis_prefix)
    token = grant.issue()
    key = web.cache.key(token)
    assert crashed.cache.shared is not None
    nonce = crashed.cache.shared.acquire(key, 60)
    assert nonce is not None

    with ThreadPoolExecutor(1) as pool:
        request = pool.submit(web.status, token)
        eventually(lambda: web.cache.lock_waits == 1)
        assert counting.calls == 0
        crashed.cache.shared.release(key, nonce)
        assert request.result() == 200

    assert counting.calls == 1


def test_without_redis_the_lock_is_skipped(grant: Grant, spawn: Spawn) -> None:
    """An unreachable Redis makes no request wait for a lock."""
    counting = CountingValidator(grant.provider.store)
    web = spawn(counting, f"redis://127.0.0.1:{free_port()}/0")
    token = grant.issue()

    assert web.status(token) == 200
    assert web.status(token) == 200
    assert counting.calls == 1
    assert web.cache.lock_waits == 0


def test_the_lock_key_is_a_keyed_hash(
    grant: Grant, spawn: Spawn, redis_url: str, redis_prefix: str
) -> None:
    counting = CountingValidator(grant.provider.store)
    web = spawn(counting, redis_url, redis_prefix)
    token = grant.issue()
    key = web.cache.key(token)
    assert web.cache.shared is not None
    nonce = web.cache.shared.acquire(key, 60)
    assert nonce is not None

    client = web.cache.redis
    assert client is not None
    assert client.exists(redis_prefix + "lock:" + key) == 1
    assert TokenCache(b"another secret").key(token) != key
    web.cache.shared.release(key, nonce)
    assert client.exists(redis_prefix + "lock:" + key) == 0
