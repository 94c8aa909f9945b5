"""How long an answer lives in each tier, and what is never cached."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server

from oauth_tai.cache import MISS, TokenCache
from oauth_tai.errors import ProviderUnavailable
from oauth_tai.identity import Identity
from oauth_tai.validators import TokenValidator
from oauth_tai.validators.introspection import IntrospectionClient
from tests.cache.conftest import (
    SECRET,
    Clock,
    CountingValidator,
    Grant,
    Spawn,
    identity,
)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def test_an_entry_with_under_a_millisecond_left_is_not_sent_to_redis(
    client: redis.Redis, redis_prefix: str
) -> None:
    """Redis refuses a TTL of zero: such an entry stays out of it, quietly."""
    clock = Clock(start=float(int(time.time())) + 0.9996)
    cache = TokenCache(SECRET, redis_client=client, prefix=redis_prefix, clock=clock)
    key = cache.key(secrets.token_urlsafe(32))

    cache.put(key, identity(clock.now + 0.0004))

    assert list(client.scan_iter(match=redis_prefix + "*")) == []
    assert cache.guard is not None and cache.guard.failures == 0
    assert isinstance(cache.get_local(key), Identity)


def test_a_stale_entry_is_kept_for_max_stale_but_never_served_fresh() -> None:
    """Past the TTL, ``get`` misses; only ``get_stale`` sees it, for max_stale."""
    clock = Clock()
    cache = TokenCache(SECRET, ttl=60, max_stale=120, clock=clock)
    start = clock.now
    cache.put("k", identity(start + 3600))

    clock.now = start + 60
    assert cache.get("k") is MISS
    assert cache.get_stale("k") == identity(start + 3600)

    clock.now = start + 179
    assert cache.get_stale("k") is not None

    clock.now = start + 180
    assert cache.get_stale("k") is None


def test_a_stale_entry_never_outlives_its_token() -> None:
    """``max_stale`` stops at the token's expiry."""
    clock = Clock()
    cache = TokenCache(SECRET, ttl=60, max_stale=600, clock=clock)
    start = clock.now
    cache.put("k", identity(start + 90))

    clock.now = start + 89
    assert cache.get_stale("k") is not None

    clock.now = start + 90
    assert cache.get_stale("k") is None


def test_without_max_stale_nothing_is_kept_past_the_ttl() -> None:
    clock = Clock()
    cache = TokenCache(SECRET, ttl=60, clock=clock)
    start = clock.now
    cache.put("k", identity(start + 3600))

    clock.now = start + 60
    assert cache.get_stale("k") is None


def test_an_inactive_answer_is_never_served_stale() -> None:
    clock = Clock()
    cache = TokenCache(SECRET, negative_ttl=5, max_stale=600, clock=clock)
    cache.put("k", None)

    assert cache.get_stale("k") is None
    clock.advance(5)
    assert cache.get("k") is MISS


class FailingOnce:
    """A provider that cannot answer the first question, then can."""

    def __init__(self, inner: TokenValidator) -> None:
        self.inner = inner
        self.failed = False

    def introspect(self, token: str) -> object:
        if not self.failed:
            self.failed = True
            raise ProviderUnavailable("introspection answered 502")
        return self.inner.introspect(token)


def test_a_provider_error_is_not_cached_as_an_answer(
    grant: Grant, spawn: Spawn, redis_url: str, redis_prefix: str
) -> None:
    """A 503 is not remembered in either tier: the next request asks again."""
    counting = CountingValidator(FailingOnce(grant.provider.store))  # type: ignore[arg-type]
    first = spawn(counting, redis_url, redis_prefix)
    token = grant.issue()

    assert first.status(token) == 503
    assert first.cache.get(first.cache.key(token)) is MISS

    assert first.status(token) == 200
    assert counting.calls == 2


def test_an_inactive_answer_is_cached_for_the_negative_ttl_only(
    grant: Grant, spawn: Spawn
) -> None:
    """A flood of one bad token costs one provider call per negative TTL."""
    clock = Clock()
    counting = CountingValidator(grant.provider.store)
    web = spawn(counting, negative_ttl=5, clock=clock)
    bad = secrets.token_urlsafe(32)

    statuses = [web.status(bad) for _ in range(20)]
    assert statuses == [401] * 20
    assert counting.calls == 1

    clock.advance(5)
    assert web.status(bad) == 401
    assert counting.calls == 2


def test_while_revocations_go_unheard_l1_keeps_an_answer_a_second_at_most() -> None:
    """Deaf to the channel, L1 holds answers briefly; hearing again drops them."""
    clock = Clock()
    cache = TokenCache(SECRET, ttl=300, max_stale=300, clock=clock)
    cache.put("before", identity(clock.now + 3600))

    cache.suspend()
    assert cache.get_local("before") is MISS
    cache.put("k", identity(clock.now + 3600))
    clock.advance(0.9)
    assert isinstance(cache.get_local("k"), Identity)
    clock.advance(0.1)
    assert cache.get_local("k") is MISS
    assert cache.get_stale("k") is None

    cache.put("k", identity(clock.now + 3600))
    cache.resume()
    assert cache.get_local("k") is MISS
    cache.put("k", identity(clock.now + 3600))
    clock.advance(299)
    assert isinstance(cache.get_local("k"), Identity)


class BrokenProvider:
    """An introspection endpoint on loopback that answers what it is told to."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b'{"active": false}'
        self.calls = 0
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.port}/introspect"

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        start_response(f"{self.status} X", [("Content-Type", "text/html")])
        return [self.body]


@pytest.fixture
def broken() -> Iterator[BrokenProvider]:
    provider = BrokenProvider()
    yield provider
    provider.server.shutdown()


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b"oops"), (502, b"bad gateway"), (200, b"<html>proxy error</html>")],
)
def test_a_broken_answer_is_an_outage_never_cached(
    broken: BrokenProvider, spawn: Spawn, status: int, body: bytes
) -> None:
    """5xx, and a 200 that is not JSON, answer 503 and are asked again."""
    broken.status, broken.body = status, body
    web = spawn(IntrospectionClient(broken.url, "rs", "rs-secret", timeout=5.0))
    token = secrets.token_urlsafe(32)

    assert [web.status(token) for _ in range(3)] == [503] * 3
    assert broken.calls == 3
    assert web.cache.get(web.cache.key(token)) is MISS

    broken.status, broken.body = 200, b'{"active": false}'
    assert [web.status(token) for _ in range(3)] == [401] * 3
    assert broken.calls == 4
