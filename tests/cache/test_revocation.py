"""Revocation reaches every process within one second, over a Redis channel.

Each "process" is a middleware with caches of its own; they share only
Redis, as processes on different hosts would. The revoking side is the
provider opened a second time, as the CLI or another worker opens it,
with its store's ``on_revoke`` wired to a cache of its own, as
``build_system`` wires it. No revocation follower runs here: only the
channel can make a process forget what its L1 holds.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from oauth_tai.cache import MISS, TokenCache
from oauth_tai.redis_connect import connect_redis
from oauth_tai.redis_guard import REDIS_BACKOFF_SECONDS
from oauth_tai.revocation import Revocation
from oauth_tai.settings import Settings
from oauth_tai.system import Provider, RevocationFollower, open_provider
from oauth_tai.validators.jwt import JwtIssuer, JwtValidator
from tests.cache.conftest import (
    CLIENT_ID,
    SECRET,
    USER,
    Clock,
    CountingValidator,
    Grant,
    Process,
    RedisServer,
    Spawn,
    eventually,
)
from tests.conftest import database_env, run_cli, server_env
from tests.interop.authlib_provider import AuthlibProvider, running_provider

# The promise under test; the bound on each wait for a revocation to land.
WITHIN_SECONDS = 1.0

# How long a test makes Redis hold every command; it measures nothing.
PAUSE_SECONDS = 2.0


class Channel:
    """A test's own subscription to the revocation channel, to read messages."""

    def __init__(self, url: str, name: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(name)
        eventually(lambda: self._next_is("subscribe"))

    def messages(self) -> list[bytes]:
        found = []
        while (message := self.pubsub.get_message(timeout=0.2)) is not None:
            assert message["type"] == "message"
            found.append(message["data"])
        return found

    def _next_is(self, kind: str) -> bool:
        message = self.pubsub.get_message(timeout=0.01)
        return message is not None and message["type"] == kind

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def revoker(
    settings: Settings, redis_url: str, redis_prefix: str
) -> Iterator[Provider]:
    """The provider in another process, announcing what it revokes."""
    other = open_provider(settings)
    client = connect_redis(redis_url)
    cache = TokenCache(SECRET, redis_client=client, prefix=redis_prefix)
    other.store.on_revoke = cache.revoke_digests
    yield other
    other.engine.dispose()
    client.close()


def fleet_of(
    spawn: Spawn, validator: object, url: str, prefix: str, size: int = 3
) -> list[Process]:
    fleet = [spawn(validator, url, prefix, listen=True) for _ in range(size)]
    eventually(lambda: all(each.cache.hearing for each in fleet))
    return fleet


def forgotten_everywhere(fleet: list[Process], tokens: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return all(
            each.cache.get_local(each.cache.key(token)) is MISS
            for each in fleet
            for token in tokens
        )

    return check


REVOCATIONS: dict[str, Callable[[Provider, str], object]] = {
    "the token (RFC 7009)": lambda p, token: p.store.revoke_token(token, CLIENT_ID),
    "the grant, from Application Access": lambda p, _: p.store.revoke_consumer_for_user(
        USER, CLIENT_ID
    ),
    "the consumer, deleted": lambda p, _: p.registry.delete(CLIENT_ID),
    "the consumer, disabled": lambda p, _: p.registry.edit(CLIENT_ID, enabled=False),
    "the user's grants": lambda p, _: p.users.delete(USER),
}


@pytest.mark.parametrize("revoke", REVOCATIONS.values(), ids=REVOCATIONS.keys())
def test_every_process_forgets_a_revoked_token_within_a_second(
    revoke: Callable[[Provider, str], object],
    grant: Grant,
    revoker: Provider,
    spawn: Spawn,
    redis_url: str,
    redis_prefix: str,
) -> None:
    counting = CountingValidator(grant.provider.store)
    fleet = fleet_of(spawn, counting, redis_url, redis_prefix)
    token = grant.issue()
    for _ in range(2):
        assert [each.status(token) for each in fleet] == [200] * len(fleet)
    assert counting.calls == 1, "one provider call; the others read it from L2"

    revoke(revoker, token)

    eventually(forgotten_everywhere(fleet, [token]), deadline=WITHIN_SECONDS)
    assert [each.status(token) for each in fleet] == [401] * len(fleet)
    assert counting.calls == 1, "the revoker left an inactive answer in L2"


def test_a_grant_revocation_is_one_message_naming_every_token(
    grant: Grant,
    revoker: Provider,
    spawn: Spawn,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """Bulk eviction is one step: one message, every token of the grant."""
    fleet = fleet_of(spawn, grant.provider.store, redis_url, redis_prefix, size=2)
    tokens = [grant.issue() for _ in range(3)]
    for token in tokens:
        assert [each.status(token) for each in fleet] == [200, 200]
    channel = Channel(redis_url, redis_prefix + "revocations")

    revoker.store.revoke_consumer_for_user(USER, CLIENT_ID)

    eventually(forgotten_everywhere(fleet, tokens), deadline=WITHIN_SECONDS)
    messages = channel.messages()
    channel.close()
    assert len(messages) == 1
    keys = {fleet[0].cache.key(token) for token in tokens}
    assert set(json.loads(messages[0][16:])["k"]) == keys
    for secret in [*tokens, USER, CLIENT_ID]:
        assert secret.encode() not in messages[0]


def test_a_forged_message_is_ignored(
    grant: Grant, spawn: Spawn, redis_url: str, redis_prefix: str
) -> None:
    """Without the secret, a message cannot make a process drop an entry."""
    web = spawn(grant.provider.store, redis_url, redis_prefix, listen=True)
    eventually(lambda: web.cache.hearing)
    token = grant.issue()
    assert web.status(token) == 200
    key = web.cache.key(token)
    impostor = TokenCache(
        b"not the secret", redis_client=connect_redis(redis_url), prefix=redis_prefix
    )
    assert impostor.channel is not None
    forged = impostor.channel.seal(Revocation((key,)))
    genuine_channel = web.cache.channel
    assert genuine_channel is not None

    client = redis.Redis.from_url(redis_url)
    epoch = web.cache.epoch
    assert client.publish(redis_prefix + "revocations", forged) == 1
    # A genuine message sent after the forged one marks when it was handled.
    marker = web.cache.key("marker-token")
    client.publish(
        redis_prefix + "revocations",
        genuine_channel.seal(Revocation((marker,))),
    )
    eventually(lambda: web.cache.epoch == epoch + 1)
    client.close()

    assert web.cache.get_local(key) is not MISS


def test_a_process_that_missed_a_revocation_drops_its_l1_on_resubscribing(
    grant: Grant, spawn: Spawn, own_redis: RedisServer
) -> None:
    """Redis restarts; meanwhile a token is revoked; no L1 keeps it after.

    The process's clock stands still, so no entry ends by age here: only
    what the process does on losing and regaining the channel matters.
    """
    counting = CountingValidator(grant.provider.store)
    web = spawn(counting, own_redis.url, listen=True, clock=Clock())
    eventually(lambda: web.cache.hearing)
    token = grant.issue()
    assert web.status(token) == 200

    own_redis.kill()
    eventually(lambda: not web.cache.hearing)
    # While deaf, the token is answered again and kept, briefly, in L1.
    assert web.status(token) == 200
    assert web.cache.get_local(web.cache.key(token)) is not MISS

    grant.provider.store.revoke_grant(grant.grant_id)  # nobody hears it
    own_redis.start()
    eventually(lambda: web.cache.hearing)

    assert web.cache.get_local(web.cache.key(token)) is MISS
    assert web.status(token) == 401


def test_a_revocation_redis_missed_is_not_undone_when_it_answers_again(
    grant: Grant, spawn: Spawn, own_redis: RedisServer
) -> None:
    """Redis stalls, keeping its data; a token is revoked meanwhile.

    The active answer Redis held from before is still there when it
    answers again. Neither the process that heard the revocation from the
    database feed, nor a process that heard nothing, may take it.
    """
    counting = CountingValidator(grant.provider.store)
    web = spawn(counting, own_redis.url, listen=True)
    revoking = spawn(counting, own_redis.url, listen=True)
    eventually(lambda: web.cache.hearing and revoking.cache.hearing)
    feed = RevocationFollower(grant.provider.store, web.cache)
    token = grant.issue()
    assert web.status(token) == 200

    # CLIENT PAUSE, not SIGSTOP: commands sent to a stopped server still
    # run when it continues; these are dropped with the connections that
    # give up on them, as they are when Redis fails over or restarts.
    admin = own_redis.client()
    admin.execute_command("CLIENT", "PAUSE", int(PAUSE_SECONDS * 1000), "ALL")
    paused_until = time.monotonic() + PAUSE_SECONDS
    grant.provider.store.revoke_grant(grant.grant_id)
    revoking.cache.revoke_digests([hashlib.sha256(token.encode()).digest()])
    assert feed.poll() == 1
    assert time.monotonic() < paused_until, "the revocation took longer than the pause"
    time.sleep(max(0.0, paused_until - time.monotonic()))
    admin.close()

    # Until Redis is used again (after the backoff) and then on: the
    # first read that finds it answering finds the stale answer too.
    key = web.cache.key(token)
    statuses = []
    until = time.monotonic() + 3 * REDIS_BACKOFF_SECONDS
    while time.monotonic() < until:
        web.cache.clear()  # read Redis every time, not L1's refusal
        statuses.append(web.status(token))
        time.sleep(0.02)
    assert set(statuses) == {401}
    assert web.cache.guard is not None and not web.cache.guard.down

    # The revoking process writes what Redis missed once Redis answers:
    # then even a process that heard nothing finds the tombstone.
    late = spawn(counting, own_redis.url)
    eventually(lambda: late.cache.get(key) is None)
    assert late.status(token) == 401


def test_a_replayed_entry_cannot_bring_a_revoked_token_back(
    grant: Grant, spawn: Spawn, redis_url: str, redis_prefix: str
) -> None:
    """Write access to Redis lets one put an old genuine entry back.

    Every process that heard the revocation still refuses the token.
    """
    counting = CountingValidator(grant.provider.store)
    web = spawn(counting, redis_url, redis_prefix, listen=True)
    revoking = spawn(counting, redis_url, redis_prefix, listen=True)
    eventually(lambda: web.cache.hearing and revoking.cache.hearing)
    token = grant.issue()
    assert web.status(token) == 200
    client = redis.Redis.from_url(redis_url)
    key = web.cache.key(token)
    name = web.cache.prefix + key
    genuine, life = client.get(name), client.pttl(name)
    assert genuine is not None and life > 0

    grant.provider.store.revoke_grant(grant.grant_id)
    revoking.cache.revoke_digests([hashlib.sha256(token.encode()).digest()])
    eventually(lambda: web.cache.get_local(key) is MISS)
    client.set(name, genuine, px=life)

    asked = counting.calls
    assert [web.status(token) for _ in range(5)] == [401] * 5
    assert counting.calls == asked + 1, "the provider was asked, not Redis believed"
    client.close()


# -- JWT access tokens --------------------------------------------------------


@pytest.fixture
def authlib_provider() -> Iterator[AuthlibProvider]:
    with running_provider() as provider:
        yield provider


def jwt_validator(authlib: AuthlibProvider) -> JwtValidator:
    issuer = JwtIssuer(authlib.issuer, authlib.jwks_url, authlib.audience)
    return JwtValidator([issuer])


def test_a_revoked_jti_is_refused_everywhere_until_the_token_expires(
    authlib_provider: AuthlibProvider,
    spawn: Spawn,
    redis_url: str,
    redis_prefix: str,
) -> None:
    validator = jwt_validator(authlib_provider)
    fleet = fleet_of(spawn, validator, redis_url, redis_prefix, size=2)
    claims = authlib_provider.claims()
    token = authlib_provider.sign(claims)
    other = authlib_provider.sign()
    for _ in range(2):
        assert [each.status(token) for each in fleet] == [200, 200]
        assert [each.status(other) for each in fleet] == [200, 200]

    revoker = TokenCache(
        SECRET, redis_client=connect_redis(redis_url), prefix=redis_prefix
    )
    revoked_at = time.time()
    revoker.revoke_jti(claims["jti"], claims["exp"])

    eventually(forgotten_everywhere(fleet, [token]), deadline=WITHIN_SECONDS)
    assert [each.status(token) for each in fleet] == [401, 401]
    assert [each.status(other) for each in fleet] == [200, 200]

    # A process started after the revocation never heard it, and L2 holds
    # nothing about the token any more (its entries ran out): the jti's
    # mark in Redis tells it.
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.scan_iter(match=redis_prefix + "token:*"))
    newcomer = spawn(validator, redis_url, redis_prefix)
    assert newcomer.status(token) == 401
    assert newcomer.status(other) == 200

    # The mark lasts until the token would have expired, not longer.
    marks = list(client.scan_iter(match=redis_prefix + "jti:*"))
    assert len(marks) == 1
    assert 0 < client.pttl(marks[0]) <= (claims["exp"] - revoked_at) * 1000
    client.close()


def test_a_revoked_jti_is_refused_without_redis(
    authlib_provider: AuthlibProvider, spawn: Spawn
) -> None:
    """With L1 only, the process that revoked refuses the jti itself."""
    web = spawn(jwt_validator(authlib_provider))
    claims = authlib_provider.claims()
    token = authlib_provider.sign(claims)
    assert web.status(token) == 200

    web.cache.revoke_jti(claims["jti"], claims["exp"])

    assert web.status(token) == 401


def test_no_key_names_a_token_user_or_consumer(
    grant: Grant,
    revoker: Provider,
    authlib_provider: AuthlibProvider,
    spawn: Spawn,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """Entries, tombstones, locks, jti marks and indexes: keyed hashes only."""
    web = spawn(grant.provider.store, redis_url, redis_prefix)
    jwt_web = spawn(jwt_validator(authlib_provider), redis_url, redis_prefix)
    token = grant.issue()
    claims = authlib_provider.claims()
    jwt = authlib_provider.sign(claims)
    assert web.status(token) == 200
    assert jwt_web.status(jwt) == 200
    assert web.cache.shared is not None
    web.cache.shared.acquire(web.cache.key(token), 60)
    revoker.store.revoke_grant(grant.grant_id)
    jwt_web.cache.revoke_jti(claims["jti"], claims["exp"])

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=redis_prefix + "*"))
    client.close()

    kinds = {key.decode().removeprefix(redis_prefix).split(":")[0] for key in keys}
    assert kinds == {"token", "lock", "jti", "jti-token"}
    plain = [token, jwt, claims["jti"], USER, CLIENT_ID, claims["sub"]]
    plain += [claims["client_id"], claims["username"]]
    for key in keys:
        for secret in plain:
            assert secret.encode() not in key
        assert hashlib.sha256(token.encode()).hexdigest().encode() not in key


def test_an_answer_obtained_before_a_revocation_is_not_cached_after_it(
    grant: Grant, spawn: Spawn, redis_url: str, redis_prefix: str
) -> None:
    """The provider said yes, then the token was revoked before the answer
    was stored: storing it would undo the revocation in both tiers."""
    counting = CountingValidator(grant.provider.store, gated=True)
    web = spawn(counting, redis_url, redis_prefix)
    token = grant.issue()
    key = web.cache.key(token)

    with ThreadPoolExecutor(1) as pool:
        request = pool.submit(web.status, token)
        eventually(lambda: counting.calls == 1)
        web.cache.revoke([key])
        counting.gate.set()
        assert request.result() == 200, "answered before the revocation"

    assert web.cache.get_local(key) is MISS
    reader = spawn(counting, redis_url, redis_prefix)
    assert reader.cache.get(key) is None, "L2 holds the revocation's answer"
    assert reader.status(token) == 401
    assert counting.calls == 1


def test_a_consumer_deleted_by_the_cli_is_forgotten_everywhere(
    grant: Grant,
    settings: Settings,
    spawn: Spawn,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """``oauth-tai clients delete`` in its own process publishes too."""
    secret = settings.effective_secret_key()
    fleet = [
        spawn(grant.provider.store, redis_url, redis_prefix, secret=secret, listen=True)
        for _ in range(2)
    ]
    eventually(lambda: all(each.cache.hearing for each in fleet))
    token = grant.issue()
    assert [each.status(token) for each in fleet] == [200, 200]
    env = server_env(
        settings.var_path,
        OAUTH_TAI_SECRET_KEY=settings.secret_key,
        OAUTH_TAI_REDIS_URL=redis_url,
        OAUTH_TAI_REDIS_PREFIX=redis_prefix,
        **database_env(settings.database_url),
    )

    deleted = run_cli(env, "clients", "delete", CLIENT_ID)

    assert deleted.returncode == 0, deleted.stderr
    eventually(forgotten_everywhere(fleet, [token]), deadline=WITHIN_SECONDS)
    assert [each.status(token) for each in fleet] == [401, 401]
