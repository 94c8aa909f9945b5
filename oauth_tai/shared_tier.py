"""L2: the provider's answers kept in Redis for every process and host.

What is stored, each under the configured prefix and a keyed hash, never a
token, user name or consumer id:

``token:<key>``
    the sealed answer about one token, for the entry's life;
``lock:<key>``
    held by the one process asking the provider about that token;
``jti:<hash>``
    a revoked JWT ``jti``, until the token would have expired;
``jti-token:<hash>``
    which token key holds an answer for that ``jti``, so its revocation
    can end the entry in one step.

Values are sealed with an HMAC under the secret key: an entry written by
anyone without the secret is ignored and logged, so write access to Redis
alone cannot forge an identity. The key is part of the signed message, so
a genuine entry copied under another token's key is refused too.

The keys need not share a Redis Cluster hash slot: a step that touches
several is a pipeline without a transaction, which redis-py's cluster
client splits by node, and the lock's release script touches its one key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from oauth_tai.identity import Identity, share
from oauth_tai.redis_connect import RedisClient
from oauth_tai.redis_guard import RedisGuard, RedisUnavailable

logger = logging.getLogger(__name__)

TAG_BYTES: Final = 16

# Shown in logs: enough to tell entries apart, far too short to be useful.
_LOG_CHARS: Final = 12

# Deletes the lock only if it is still ours: after its window ran out,
# another process may hold it.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """An answer read from Redis: ``None`` is an inactive token."""

    identity: Identity | None
    fresh_until: float
    jti_hash: str | None


class SharedTier:
    """Read and write sealed answers, revocation marks and locks in Redis.

    Every method but :meth:`read`, :meth:`acquire`, :meth:`peek` and
    :meth:`jti_marked` swallows a Redis failure (the guard has logged it):
    L2 is an accelerator, and a lost write only costs a provider call
    later.

    :param guard: the guarded Redis connection.
    :param prefix: prepended to every key.
    :param tag_key: the HMAC key sealing values.
    """

    def __init__(self, guard: RedisGuard, prefix: str, tag_key: bytes) -> None:
        self.guard = guard
        self.prefix = prefix
        self._entries = prefix + "token:"
        self._locks = prefix + "lock:"
        self._jtis = prefix + "jti:"
        self._jti_tokens = prefix + "jti-token:"
        self._tag_key = tag_key

    # -- answers ----------------------------------------------------------

    def read(self, key: str) -> SharedEntry | None:
        """Return the genuine entry for ``key``, or ``None``.

        Raises :class:`~oauth_tai.redis_guard.RedisUnavailable`.
        """
        name = self._entries + key
        raw = self.guard.call(lambda r: r.get(name))
        return self._unseal(key, raw) if isinstance(raw, bytes) else None

    def write(self, key: str, entry: SharedEntry, seconds: float) -> None:
        """Keep ``entry`` for ``seconds``; a life under a millisecond is skipped.

        An entry already there wins: it may be a revocation's tombstone,
        which an answer obtained just before the revocation must not
        overwrite.
        """
        millis = int(seconds * 1000)
        if millis <= 0:
            # Redis refuses a TTL of zero or less; the entry is over anyway.
            return

        value = self._seal(key, entry)
        jti_name = None if entry.jti_hash is None else self._jti_tokens + entry.jti_hash

        def store(r: RedisClient) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.set(self._entries + key, value, px=millis, nx=True)
            if jti_name is not None:
                pipe.set(jti_name, key, px=millis)
            pipe.execute()

        self._quietly(store)

    def tombstone(self, keys: list[str], until: float, seconds: float) -> bool:
        """Replace the entries for ``keys`` with inactive ones, for ``seconds``.

        :param until: the clock time at which the tombstones' answer ends.
        Returns whether Redis took them.
        """
        millis = int(seconds * 1000)
        if not keys or millis <= 0:
            return True

        tomb = SharedEntry(None, until, None)

        def store(r: RedisClient) -> bool:
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.set(self._entries + key, self._seal(key, tomb), px=millis)
            pipe.execute()
            return True

        return bool(self._quietly(store, force=True))

    def delete(self, key: str) -> None:
        name = self._entries + key
        self._quietly(lambda r: r.delete(name))

    # -- revoked jtis -----------------------------------------------------

    def mark_jti(
        self, jti_hash: str, seconds: float, tomb_until: float, tomb_seconds: float
    ) -> None:
        """Record a revoked ``jti`` for ``seconds``; end its token's entry."""
        millis = int(seconds * 1000)
        if millis <= 0:
            return

        marker, index = self._jtis + jti_hash, self._jti_tokens + jti_hash

        def store(r: RedisClient) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.set(marker, b"1", px=millis)
            pipe.get(index)
            return pipe.execute()[1]

        key = self._quietly(store, force=True)
        if isinstance(key, bytes):
            self.tombstone([key.decode()], tomb_until, tomb_seconds)

    def jti_marked(self, jti_hash: str) -> bool:
        """Tell whether ``jti_hash`` was revoked.

        Raises :class:`~oauth_tai.redis_guard.RedisUnavailable`.
        """
        name = self._jtis + jti_hash
        return bool(self.guard.call(lambda r: r.exists(name)))

    # -- the fleet-wide flight ----------------------------------------------

    def acquire(self, key: str, seconds: float) -> str | None:
        """Take the lock for ``key`` for ``seconds``; return its nonce, or ``None``.

        ``None`` means another process holds it. Raises
        :class:`~oauth_tai.redis_guard.RedisUnavailable`.
        """
        nonce = secrets.token_hex(8)
        name, millis = self._locks + key, max(1, int(seconds * 1000))
        taken = self.guard.call(lambda r: r.set(name, nonce, nx=True, px=millis))
        return nonce if taken else None

    def release(self, key: str, nonce: str) -> None:
        name = self._locks + key
        self._quietly(lambda r: r.eval(_RELEASE, 1, name, nonce))

    def peek(self, key: str) -> tuple[SharedEntry | None, bool]:
        """Return the entry for ``key`` and whether its lock is still held.

        Raises :class:`~oauth_tai.redis_guard.RedisUnavailable`.
        """
        entry, lock = self._entries + key, self._locks + key

        def look(r: RedisClient) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.get(entry)
            pipe.exists(lock)
            return list(pipe.execute())

        raw, held = self.guard.call(look)
        found = self._unseal(key, raw) if isinstance(raw, bytes) else None
        return found, bool(held)

    # -- sealing ------------------------------------------------------------

    def _seal(self, key: str, entry: SharedEntry) -> bytes:
        identity = entry.identity
        body = json.dumps(
            {
                "i": None if identity is None else _identity_to_json(identity),
                "e": entry.fresh_until,
                "j": entry.jti_hash,
            },
            separators=(",", ":"),
        ).encode()
        return self._tag(key, body) + body

    def _unseal(self, key: str, raw: bytes) -> SharedEntry | None:
        tag, body = raw[:TAG_BYTES], raw[TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(key, body)):
            logger.warning(
                "ignoring a Redis cache entry with a bad signature (key %s…)",
                key[:_LOG_CHARS],
            )
            return None

        try:
            data = json.loads(body)
            identity = None if data["i"] is None else _identity_from_json(data["i"])
            jti_hash = data.get("j")
            return SharedEntry(
                identity,
                float(data["e"]),
                jti_hash if isinstance(jti_hash, str) else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("ignoring an unreadable Redis cache entry")
            return None

    def _tag(self, key: str, body: bytes) -> bytes:
        mac = hmac.new(self._tag_key, key.encode() + b"\0" + body, hashlib.sha256)
        return mac.digest()[:TAG_BYTES]

    def _quietly(
        self, operation: Callable[[RedisClient], Any], *, force: bool = False
    ) -> Any:
        try:
            return self.guard.call(operation, force=force)
        except RedisUnavailable:
            return None  # the guard has logged the outage


def _identity_to_json(identity: Identity) -> dict[str, Any]:
    return {
        "u": identity.user,
        "c": identity.consumer_id,
        "n": identity.consumer_name,
        "s": sorted(identity.scopes),
        "x": identity.expires_at,
        "h": identity.token_hash,
        "a": sorted(identity.audiences),
        "i": identity.issuer,
    }


def _identity_from_json(data: dict[str, Any]) -> Identity:
    return Identity(
        user=data["u"],
        consumer_id=share(data["c"]),
        consumer_name=share(data["n"]),
        scopes=share(frozenset(data["s"])),
        expires_at=int(data["x"]),
        token_hash=data["h"],
        audiences=share(frozenset(data.get("a", ()))),
        issuer=None if (issuer := data.get("i")) is None else share(issuer),
    )
