"""Redis down, restarted or stalled: no request fails because of it.

Each test runs a ``redis-server`` of its own and kills, restarts or
pauses it; the shared Redis is never touched.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from oauth_tai.redis_guard import REDIS_BACKOFF_SECONDS
from tests.cache.conftest import (
    Clock,
    CountingValidator,
    Grant,
    Process,
    RedisServer,
    Spawn,
    eventually,
)
from tests.conftest import free_port

GUARD_LOGGER = "oauth_tai.redis_guard"


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == GUARD_LOGGER and record.levelno >= logging.WARNING
    ]


class Traffic:
    """Requests in a loop on a thread of their own, counted by token and status."""

    def __init__(self, web: Process, tokens: dict[str, str]) -> None:
        self.web = web
        self.tokens = tokens
        self.answers: Counter[tuple[str, int]] = Counter()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def more_than(self, count: int) -> int:
        """Wait until ``count`` more requests were answered; return the total."""
        target = self.sent + count
        eventually(lambda: self.sent >= target)
        return self.sent

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, token in self.tokens.items():
                self.answers[name, self.web.status(token)] += 1
            self.sent += 1


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO):
        yield caplog


def test_a_redis_restart_during_traffic_fails_no_request(
    grant: Grant,
    spawn: Spawn,
    own_redis: RedisServer,
    logged: pytest.LogCaptureFixture,
) -> None:
    """Every answer is the right one while Redis dies and comes back."""
    web = spawn(grant.provider.store, own_redis.url, listen=True)
    eventually(lambda: web.cache.hearing)
    good, bad = grant.issue(), secrets.token_urlsafe(32)
    guard = web.cache.guard
    assert guard is not None

    with Traffic(web, {"good": good, "bad": bad}) as traffic:
        traffic.more_than(20)
        own_redis.kill()
        eventually(lambda: guard.down and not web.cache.hearing)
        traffic.more_than(20)
        own_redis.start()
        eventually(lambda: web.cache.hearing and not guard.down)
        traffic.more_than(20)

    assert set(traffic.answers) == {("good", 200), ("bad", 401)}
    assert guard.outages == 1
    assert len(warnings(logged)) == 1

    # Recovered by itself: answers reach the restarted Redis again.
    fresh = grant.issue()
    assert web.status(fresh) == 200
    client = own_redis.client()
    assert client.exists("oauth-tai:token:" + web.cache.key(fresh)) == 1
    client.close()


def test_a_dead_redis_is_tried_once_per_backoff_not_per_request(
    grant: Grant, spawn: Spawn, logged: pytest.LogCaptureFixture
) -> None:
    """Fifty misses while Redis is down cost one failed call and one warning."""
    monotonic = Clock(start=0.0)
    counting = CountingValidator(grant.provider.store)
    web = spawn(counting, f"redis://127.0.0.1:{free_port()}/0", monotonic=monotonic)
    guard = web.cache.guard
    assert guard is not None

    statuses = [web.status(grant.issue()) for _ in range(50)]

    assert statuses == [200] * 50
    assert counting.calls == 50
    assert (guard.outages, guard.failures) == (1, 1)

    monotonic.advance(REDIS_BACKOFF_SECONDS)
    assert web.status(grant.issue()) == 200
    assert (guard.outages, guard.failures) == (1, 2)
    assert len(warnings(logged)) == 1


def test_a_stalled_redis_costs_one_timeout_then_is_skipped(
    grant: Grant, spawn: Spawn, own_redis: RedisServer
) -> None:
    """A Redis that stops answering times out once; then requests skip it."""
    monotonic = Clock(start=0.0)
    web = spawn(grant.provider.store, own_redis.url, monotonic=monotonic)
    guard = web.cache.guard
    assert guard is not None
    assert web.status(grant.issue()) == 200

    own_redis.pause()
    try:
        statuses = [web.status(grant.issue()) for _ in range(20)]
    finally:
        own_redis.resume()

    assert statuses == [200] * 20
    assert (guard.outages, guard.failures) == (1, 1)

    monotonic.advance(REDIS_BACKOFF_SECONDS)
    token = grant.issue()
    assert web.status(token) == 200
    assert not guard.down
    client = own_redis.client()
    assert client.exists("oauth-tai:token:" + web.cache.key(token)) == 1
    client.close()
