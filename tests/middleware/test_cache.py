"""The two cache tiers: in-process L1 and a real Redis as L2."""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from webtest import TestApp

from oauth_tai.cache import MISS, TokenCache
from oauth_tai.identity import Identity
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.redis_connect import connect_redis
from oauth_tai.system import Provider
from tests.cache.conftest import identity

SECRET = b"cache-test-secret"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def shared_cache(
    client: redis.Redis, prefix: str, clock: Clock, secret: bytes = SECRET, **kw: int
) -> TokenCache:
    return TokenCache(secret, redis_client=client, prefix=prefix, clock=clock, **kw)


def stored(client: redis.Redis, prefix: str) -> dict[bytes, bytes]:
    """Every key under the test's prefix, with its value."""
    found = {}
    for key in client.scan_iter(match=prefix + "*"):
        value = client.get(key)
        assert isinstance(value, bytes)
        found[key] = value
    return found


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- L1 -------------------------------------------------------------------


def test_l1_entry_never_outlives_the_token(clock: Clock) -> None:
    """An answer is dropped at the token's expiry, well before the TTL."""
    cache = TokenCache(SECRET, ttl=300, clock=clock)
    expires_at = int(clock.now) + 10
    cache.put("k", identity(expires_at))

    clock.now = expires_at - 0.5
    assert cache.get("k") == identity(expires_at)

    clock.now = expires_at
    assert cache.get("k") is MISS


def test_l1_entry_ends_at_the_ttl(clock: Clock) -> None:
    """A long-lived token's answer is kept no longer than the TTL."""
    cache = TokenCache(SECRET, ttl=30, clock=clock)
    start = clock.now
    cache.put("k", identity(int(start) + 3600))

    clock.now = start + 29
    assert isinstance(cache.get("k"), Identity)

    clock.now = start + 30
    assert cache.get("k") is MISS


def test_negative_answer_is_kept_only_for_negative_ttl(clock: Clock) -> None:
    """``None`` (inactive) is cached, distinct from a miss, then forgotten."""
    cache = TokenCache(SECRET, ttl=300, negative_ttl=5, clock=clock)
    start = clock.now
    cache.put("k", None)

    clock.now = start + 4.9
    assert cache.get("k") is None

    clock.now = start + 5
    assert cache.get("k") is MISS


def test_clear_forgets_l1(clock: Clock) -> None:
    """``clear`` empties the in-process tier."""
    cache = TokenCache(SECRET, clock=clock)
    cache.put("k", identity(int(clock.now) + 60))

    cache.clear()

    assert cache.get("k") is MISS


# -- keys -----------------------------------------------------------------


def test_keys_are_keyed_hashes_of_the_token() -> None:
    """A key is stable per secret, differs across secrets, hides the token."""
    token = secrets.token_urlsafe(32)
    first, again = TokenCache(b"one"), TokenCache(b"one")
    other = TokenCache(b"two")

    key = first.key(token)

    assert key == again.key(token)
    assert key != other.key(token)
    assert key != first.key(token + "x")
    assert token not in key
    assert key != hashlib.sha256(token.encode()).hexdigest()


def test_key_for_digest_matches_the_token_key() -> None:
    """The store's SHA-256 digest of a token leads to the same cache key."""
    token = secrets.token_urlsafe(32)
    cache = TokenCache(SECRET)

    digest = hashlib.sha256(token.encode()).digest()

    assert cache.key_for_digest(digest) == cache.key(token)


def test_keys_stay_the_same_when_remembered_and_when_forgotten() -> None:
    """Keys of tokens seen before come from a bounded memo, unchanged."""
    cache = TokenCache(SECRET, maxsize=4)
    tokens = [secrets.token_urlsafe(32) for _ in range(10)]

    for _ in range(3):
        for token in tokens:
            digest = hashlib.sha256(token.encode()).digest()
            assert cache.key(token) == cache.key_for_digest(digest)

    assert len(cache._memo) <= 4


# -- L2 against a real Redis ----------------------------------------------


def test_another_process_reads_the_answer_from_redis(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """What one cache writes, a second cache with the same secret reads."""
    writer = shared_cache(client, redis_prefix, clock)
    reader = shared_cache(client, redis_prefix, clock)
    key = writer.key(secrets.token_urlsafe(32))
    answer = identity(int(clock.now) + 600)

    writer.put(key, answer)

    assert reader.get(key) == answer


def test_a_negative_answer_is_shared_for_negative_ttl_only(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """An inactive answer reaches other processes and expires on time."""
    writer = shared_cache(client, redis_prefix, clock, negative_ttl=5)
    key = writer.key(secrets.token_urlsafe(32))
    writer.put(key, None)

    assert shared_cache(client, redis_prefix, clock).get(key) is None
    assert 0 < client.pttl(redis_prefix + "token:" + key) <= 5000

    clock.now += 5
    assert shared_cache(client, redis_prefix, clock).get(key) is MISS


def test_redis_ttl_is_bounded_by_the_token_life(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """Redis drops an entry no later than the token expires."""
    cache = shared_cache(client, redis_prefix, clock, ttl=300)
    key = cache.key(secrets.token_urlsafe(32))
    expires_at = int(clock.now) + 30

    cache.put(key, identity(expires_at))

    pttl = client.pttl(redis_prefix + "token:" + key)
    assert 0 < pttl <= (expires_at - clock.now) * 1000


def test_redis_ttl_is_bounded_by_the_cache_ttl(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """For a long-lived token, Redis keeps the entry no longer than the TTL."""
    cache = shared_cache(client, redis_prefix, clock, ttl=20)
    key = cache.key(secrets.token_urlsafe(32))

    cache.put(key, identity(int(clock.now) + 3600))

    assert 0 < client.pttl(redis_prefix + "token:" + key) <= 20_000


def test_an_entry_read_after_the_token_expired_is_a_miss(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """A reader whose clock passed the expiry ignores what Redis still holds."""
    writer = shared_cache(client, redis_prefix, clock)
    key = writer.key(secrets.token_urlsafe(32))
    expires_at = int(clock.now) + 30
    writer.put(key, identity(expires_at))

    later = Clock()
    later.now = expires_at + 1
    reader = shared_cache(client, redis_prefix, later)

    assert client.exists(redis_prefix + "token:" + key) == 1
    assert reader.get(key) is MISS


def test_an_expired_identity_is_never_written(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """An identity whose expiry is now or past goes to neither tier."""
    cache = shared_cache(client, redis_prefix, clock)
    past, now = cache.key("past-token"), cache.key("now-token")

    cache.put(past, identity(int(clock.now) - 1))
    clock.now = float(int(clock.now))
    cache.put(now, identity(int(clock.now)))

    assert cache.get(past) is MISS
    assert cache.get(now) is MISS
    assert stored(client, redis_prefix) == {}


def test_the_token_never_appears_in_redis(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """Neither a key nor a value in Redis holds the raw token."""
    cache = shared_cache(client, redis_prefix, clock)
    active, inactive = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    cache.put(cache.key(active), identity(int(clock.now) + 60))
    cache.put(cache.key(inactive), None)

    entries = stored(client, redis_prefix)

    assert len(entries) == 2
    for key, value in entries.items():
        for token in (active, inactive):
            assert token.encode() not in key
            assert token.encode() not in value


def test_a_forged_entry_is_ignored(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """An identity written to Redis without the secret is not believed."""
    cache = shared_cache(client, redis_prefix, clock)
    key = cache.key(secrets.token_urlsafe(32))
    body = json.dumps(
        {
            "i": {
                "u": "mallory",
                "c": "notes-app",
                "n": "Notes App",
                "s": ["connections"],
                "x": int(clock.now) + 600,
                "h": "0123456789ab",
            },
            "e": clock.now + 600,
        }
    ).encode()

    client.set(redis_prefix + "token:" + key, secrets.token_bytes(16) + body)

    assert cache.get(key) is MISS


def test_a_modified_entry_is_ignored(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """Changing the user inside a genuine entry breaks its signature."""
    writer = shared_cache(client, redis_prefix, clock)
    key = writer.key(secrets.token_urlsafe(32))
    writer.put(key, identity(int(clock.now) + 600, user="alice"))
    raw = client.get(redis_prefix + "token:" + key)
    assert isinstance(raw, bytes) and b'"alice"' in raw

    client.set(redis_prefix + "token:" + key, raw.replace(b'"alice"', b'"admin"'))

    assert shared_cache(client, redis_prefix, clock).get(key) is MISS


def test_a_genuine_entry_moved_to_another_key_is_ignored(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """A signed entry copied under another token's key is not believed."""
    writer = shared_cache(client, redis_prefix, clock)
    mine, theirs = writer.key("my-token"), writer.key("their-token")
    writer.put(mine, identity(int(clock.now) + 600))
    raw = client.get(redis_prefix + "token:" + mine)
    assert isinstance(raw, bytes)

    client.set(redis_prefix + "token:" + theirs, raw)

    assert shared_cache(client, redis_prefix, clock).get(theirs) is MISS


def test_a_cache_with_another_secret_cannot_read_the_entry(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """Another secret gives other keys, and cannot verify ours either."""
    token = secrets.token_urlsafe(32)
    writer = shared_cache(client, redis_prefix, clock)
    outsider = shared_cache(client, redis_prefix, clock, secret=b"another-secret")
    writer.put(writer.key(token), identity(int(clock.now) + 600))

    assert outsider.get(outsider.key(token)) is MISS
    assert outsider.get(writer.key(token)) is MISS


def test_evict_removes_the_answer_from_both_tiers(
    client: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    """After ``evict`` neither this process nor another finds the answer."""
    cache = shared_cache(client, redis_prefix, clock)
    key = cache.key(secrets.token_urlsafe(32))
    cache.put(key, identity(int(clock.now) + 600))
    assert isinstance(cache.get(key), Identity)

    cache.evict(key)

    assert cache.get(key) is MISS
    assert shared_cache(client, redis_prefix, clock).get(key) is MISS
    assert stored(client, redis_prefix) == {}


# -- Redis unreachable ----------------------------------------------------


@pytest.fixture
def dead_redis() -> Iterator[redis.Redis]:
    """A client for a loopback port where nothing listens."""
    connection = connect_redis(f"redis://127.0.0.1:{unused_port()}/0")
    yield connection
    connection.close()


def test_unreachable_redis_is_a_miss_not_an_error(
    dead_redis: redis.Redis, clock: Clock
) -> None:
    """With Redis down, get misses, put and evict do not raise, L1 still works."""
    cache = TokenCache(SECRET, redis_client=dead_redis, clock=clock)
    key = cache.key(secrets.token_urlsafe(32))
    assert cache.get(key) is MISS

    answer = identity(int(clock.now) + 60)
    cache.put(key, answer)
    assert cache.get(key) == answer

    cache.evict(key)
    assert cache.get(key) is MISS


def test_middleware_authenticates_via_the_provider_when_redis_is_down(
    dead_redis: redis.Redis, provider: Provider
) -> None:
    """A dead L2 costs a provider call, not the request."""
    provider.registry.add("notes-app", "Notes App", "http://127.0.0.1:9/cb")
    provider.users.add("alice", "alice-password")
    grant_id = provider.store.consent("alice", "notes-app", "connections")
    token = secrets.token_urlsafe(32)
    provider.store.issue(grant_id, token, None, 600)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(environ.get("REMOTE_USER")).encode()]

    cache = TokenCache(SECRET, redis_client=dead_redis)
    web = TestApp(TrustAssociationMiddleware(app, provider.store, cache))

    for _ in range(2):
        response = web.get("/", headers={"Authorization": f"Bearer {token}"})
        assert response.text == "alice"

    web.get("/", headers={"Authorization": "Bearer unknown"}, status=401)


def test_keys_exist_for_strings_no_server_sends() -> None:
    """Lone surrogates get keys of their own: hashing them never raises."""
    cache = TokenCache(b"secret")

    keys = {cache.key("\ud800"), cache.key("\ud801"), cache.key("ok")}
    jti_hashes = {cache.jti_hash("\udcff"), cache.jti_hash("\udcfe")}

    assert len(keys) == 3
    assert len(jti_hashes) == 2
