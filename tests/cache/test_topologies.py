"""The shared tier on every kind of Redis ``OAUTH_TAI_REDIS_URL`` can name.

Every test runs on a master behind Sentinel, a Redis Cluster, a server
speaking TLS and a server on a Unix socket, each real ``redis-server``
processes this run started on loopback (see :mod:`tests.redis_topologies`). On the
cluster the keys of one step fall in different hash slots, on different
nodes: nothing may assume they share one.
"""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redis.crc import key_slot

from oauth_tai.cache import MISS, TokenCache
from oauth_tai.identity import Identity
from oauth_tai.redis_connect import REDIS_FAILURES, redis_connector
from oauth_tai.redis_guard import REDIS_BACKOFF_SECONDS
from tests.cache.conftest import SECRET, Clock, eventually
from tests.conftest import free_port, start_server, stop_server
from tests.redis_topologies import (
    MASTER_PASSWORD,
    SENTINEL_PASSWORD,
    ClusterRedis,
    SentinelRedis,
    TlsRedis,
    UnixRedis,
)

# A revocation reaches every listening process within this.
WITHIN_SECONDS = 1.0

Caches = Callable[..., TokenCache]

# One expiry for every answer of the run, so that answers compare equal.
EXPIRES_AT = int(time.time()) + 3600


@pytest.fixture(params=["sentinel", "cluster", "tls", "unix"])
def url(request: pytest.FixtureRequest) -> str:
    """``OAUTH_TAI_REDIS_URL`` for the topology under test."""
    topology: SentinelRedis | ClusterRedis | TlsRedis | UnixRedis = (
        request.getfixturevalue(f"redis_{request.param}")
    )
    return topology.url


@pytest.fixture
def caches(url: str) -> Iterator[Caches]:
    """Make caches, one per process they stand for, sharing a key prefix."""
    prefix = f"oauth-tai-test:{secrets.token_hex(8)}:"
    made: list[TokenCache] = []

    def make(**options: object) -> TokenCache:
        cache = TokenCache(
            SECRET, redis_client=redis_connector(url), prefix=prefix, **options
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()
        if cache.guard is not None:
            cache.guard.client.close()


def answer(user: str = "alice") -> Identity:
    return Identity(
        user=user,
        consumer_id="notes-app",
        consumer_name="Notes App",
        scopes=frozenset({"connections"}),
        expires_at=EXPIRES_AT,
        token_hash="0123456789ab",
    )


def new_key(cache: TokenCache) -> str:
    return cache.key(secrets.token_urlsafe(32))


def slots(cache: TokenCache, keys: list[str]) -> set[int]:
    return {key_slot((cache.prefix + key).encode()) for key in keys}


def test_an_answer_one_process_cached_is_found_by_another(caches: Caches) -> None:
    writer, reader = caches(), caches()
    key = new_key(writer)

    writer.put(key, answer())

    assert reader.get_local(key) is MISS
    assert reader.get(key) == answer()
    assert reader.get_local(key) == answer(), "an L2 answer is kept in L1"
    assert reader.guard is not None and not reader.guard.down


def test_revoking_several_tokens_ends_each_entry(caches: Caches) -> None:
    writer, revoker, reader = caches(), caches(), caches()
    keys = [new_key(writer) for _ in range(8)]
    for key in keys:
        writer.put(key, answer())
    assert len(slots(writer, keys)) > 1

    revoker.revoke(keys)

    assert [reader.get(key) for key in keys] == [None] * len(keys)
    assert [writer.get_local(key) for key in keys] == [answer()] * len(keys), (
        "the writer does not listen: only its L2 entries ended"
    )


def test_a_revocation_reaches_a_listening_process_within_a_second(
    caches: Caches,
) -> None:
    listener, revoker = caches(), caches()
    assert listener.listen(wait=5.0)
    keys = [new_key(listener) for _ in range(3)]
    for key in keys:
        listener.put(key, answer())
    assert all(listener.get_local(key) == answer() for key in keys)

    revoker.revoke(keys)

    eventually(
        lambda: all(listener.get_local(key) is MISS for key in keys),
        deadline=WITHIN_SECONDS,
    )
    assert listener.hearing


def test_one_process_asks_the_provider_while_another_waits(caches: Caches) -> None:
    first, second = caches(), caches()
    key = new_key(first)

    def claimed(cache: TokenCache) -> Identity | None | object:
        with cache.claim(key) as found:
            return found

    with first.claim(key) as found, ThreadPoolExecutor(1) as pool:
        assert found is MISS, "the first holds the lock and asks"
        waiting = pool.submit(claimed, second)
        eventually(lambda: second.lock_waits == 1)
        first.put(key, answer())
        assert waiting.result(timeout=5) == answer()

    # The release script ran on the lock's node: nobody holds it now.
    assert first.shared is not None
    assert first.shared.peek(key)[1] is False


def test_a_revoked_jti_is_refused_by_every_process(caches: Caches) -> None:
    writer, revoker, reader = caches(), caches(), caches()
    key = new_key(writer)
    writer.put(key, answer(), jti="jti-1")

    revoker.revoke_jti("jti-1", time.time() + 600)

    assert reader.jti_revoked("jti-1")
    assert not reader.jti_revoked("jti-2")
    assert reader.get(key) is None, "the token's entry ended with its jti"


def test_tls_trusts_only_the_certificate_authorities_it_is_given(
    redis_tls: TlsRedis,
) -> None:
    """Without the CA that signed the server's certificate, no connection."""
    system_trust = redis_tls.url.split("?")[0]

    with pytest.raises(REDIS_FAILURES, match="certificate verify failed"):
        redis_connector(system_trust)().ping()


def test_serve_starts_and_listens_on_the_topology(tmp_path: Path, url: str) -> None:
    server = start_server(
        tmp_path / "var",
        OAUTH_TAI_REDIS_URL=url,
        OAUTH_TAI_REDIS_PREFIX=f"oauth-tai-test:{secrets.token_hex(8)}:",
    )
    try:
        eventually(lambda: "listening for revocations" in server.log())
        with urllib.request.urlopen(server.base + "/readyz", timeout=5) as ready:
            assert ready.status == 200
    finally:
        stop_server(server)

    log = server.log()
    assert "Traceback" not in log
    assert MASTER_PASSWORD not in log and SENTINEL_PASSWORD not in log


def test_a_sentinel_failover_is_a_short_outage(tmp_path: Path) -> None:
    """The cache and the channel follow the master the Sentinel names."""
    topology = SentinelRedis(tmp_path, replica=True)
    clock = Clock(start=0.0)
    prefix = f"oauth-tai-test:{secrets.token_hex(8)}:"
    made: list[TokenCache] = []

    def cache() -> TokenCache:
        client = redis_connector(topology.url)
        made.append(
            TokenCache(SECRET, redis_client=client, prefix=prefix, monotonic=clock)
        )
        return made[-1]

    try:
        topology.start()
        listener, writer, reader = cache(), cache(), cache()
        assert listener.listen(wait=5.0)
        key = new_key(writer)
        channel = listener.channel
        assert channel is not None
        joins = channel.joins

        topology.failover()

        def written_and_read() -> bool:
            # Each failed call leaves Redis alone for the backoff: skip it.
            clock.advance(REDIS_BACKOFF_SECONDS)
            writer.put(key, answer())
            return reader.get(key) == answer()

        eventually(written_and_read)
        eventually(lambda: listener.hearing and channel.joins > joins)

        listener.put(key, answer())
        assert listener.get_local(key) == answer()
        writer.revoke([key])
        eventually(lambda: listener.get_local(key) is MISS, deadline=WITHIN_SECONDS)
    finally:
        for each in made:
            each.close()
        topology.close()


def test_a_cluster_down_at_start_is_opened_once_it_answers(tmp_path: Path) -> None:
    """The process starts without L2, and takes it up when the cluster is there."""
    cluster = ClusterRedis(tmp_path)
    clock = Clock(start=0.0)
    cache = TokenCache(
        SECRET,
        redis_client=redis_connector(cluster.url),
        prefix="oauth-tai-test:",
        monotonic=clock,
    )
    other = TokenCache(
        SECRET, redis_client=redis_connector(cluster.url), prefix="oauth-tai-test:"
    )
    key = new_key(cache)
    try:
        cache.put(key, answer())
        assert cache.get(key) == answer(), "L1 answers without Redis"
        assert cache.guard is not None and cache.guard.down

        cluster.start()
        clock.advance(5.0)
        cache.put(key, answer("bob"))

        assert not cache.guard.down
        assert other.get(key) == answer("bob")
    finally:
        cluster.close()


def test_an_unreachable_port_is_not_a_cluster() -> None:
    """A cluster URL naming nothing costs L2, not the request."""
    cache = TokenCache(
        SECRET, redis_client=redis_connector(f"redis+cluster://127.0.0.1:{free_port()}")
    )
    key = new_key(cache)

    assert cache.get(key) is MISS
    assert cache.jti_revoked("jti-1") is False
    with cache.claim(key) as found:
        assert found is MISS
