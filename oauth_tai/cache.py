"""The two cache tiers in front of the provider.

L1 is a bounded per-process cache; L2 is Redis, shared by every process
and host. Both hold the provider's answer about a token (an
:class:`Identity`, or ``None`` for an inactive token) under a keyed hash of
the token, never the token. An entry's life is the shortest of the
configured TTL and the token's remaining life, so no tier can say yes for a
token that has expired. L2 values carry an HMAC: a writer without the
secret key cannot forge an identity by writing to Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import redis
from cachetools import TLRUCache

from oauth_tai.identity import Identity

logger = logging.getLogger(__name__)

# Length of the hash shown in logs: enough to tell tokens apart in an
# incident, far too short to be any use to someone reading the log.
LOG_HASH_CHARS: Final = 12

# Redis calls sit on the request path: a slow Redis must cost little more
# than a missing one.
REDIS_TIMEOUT_SECONDS: Final = 0.25

_TAG_BYTES: Final = 16


class Miss:
    """The type of :data:`MISS`, the answer of a cache that knows nothing."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS: Final = Miss()

Entry = tuple[Identity | None, float]


class TokenCache:
    """Cache provider answers in process (L1) and, optionally, in Redis (L2).

    :param secret: key material for the token hashes and the L2 HMAC.
    :param ttl: longest an active answer is kept, in seconds.
    :param negative_ttl: how long an inactive answer is kept, in seconds.
    :param maxsize: entries held in L1.
    :param redis_client: the L2 connection, or ``None`` for L1 only.
    :param prefix: prepended to every Redis key.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        ttl: int = 300,
        negative_ttl: int = 5,
        maxsize: int = 100_000,
        redis_client: redis.Redis | None = None,
        prefix: str = "oauth-tai:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hash_key = hashlib.sha256(b"oauth-tai token key\0" + secret).digest()
        self._tag_key = hashlib.sha256(b"oauth-tai cache tag\0" + secret).digest()
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.redis = redis_client
        self.prefix = prefix + "token:"
        self._clock = clock
        self._l1: TLRUCache[str, Entry] = TLRUCache(
            maxsize, ttu=_entry_expiry, timer=clock
        )
        self._lock = threading.Lock()
        self._redis_down = False

    def key(self, token: str) -> str:
        """Return the keyed hash under which ``token`` is cached."""
        return self.key_for_digest(hashlib.sha256(token.encode()).digest())

    def key_for_digest(self, digest: bytes) -> str:
        """Return the cache key for a token known only by its SHA-256 digest.

        The provider stores tokens as SHA-256 digests; hashing the digest
        instead of the token lets it evict a revoked token it cannot see.
        """
        return hashlib.blake2b(digest, key=self._hash_key, digest_size=32).hexdigest()

    def get(self, key: str) -> Identity | None | Miss:
        """Return the cached answer for ``key``, or :data:`MISS`."""
        with self._lock:
            entry = self._l1.get(key)

        if entry is not None:
            return entry[0]

        if self.redis is None:
            return MISS

        return self._get_l2(key)

    def put(self, key: str, identity: Identity | None) -> None:
        """Cache the provider's answer: an identity, or ``None`` if inactive."""
        now = self._clock()
        if identity is None:
            expires = now + self.negative_ttl
        else:
            expires = min(now + self.ttl, float(identity.expires_at))

        if expires <= now:
            return

        with self._lock:
            self._l1[key] = (identity, expires)

        if self.redis is not None:
            self._put_l2(key, identity, expires - now)

    def evict(self, key: str) -> None:
        """Forget ``key`` in both tiers."""
        self.evict_local(key)
        if self.redis is not None:
            self._call_redis(self.redis.delete, self.prefix + key)

    def evict_local(self, key: str) -> None:
        """Forget ``key`` in L1 only: L2 was already cleaned by the revoker."""
        with self._lock:
            self._l1.pop(key, None)

    def clear(self) -> None:
        """Forget everything in L1."""
        with self._lock:
            self._l1.clear()

    def _get_l2(self, key: str) -> Identity | None | Miss:
        assert self.redis is not None
        raw = self._call_redis(self.redis.get, self.prefix + key)
        if not isinstance(raw, bytes):
            return MISS

        entry = self._unseal(key, raw)
        if entry is None:
            return MISS

        if entry[1] > self._clock():
            with self._lock:
                self._l1[key] = entry
            return entry[0]

        return MISS

    def _put_l2(self, key: str, identity: Identity | None, seconds: float) -> None:
        assert self.redis is not None
        millis = int(seconds * 1000)
        if millis <= 0:
            return

        expires = self._clock() + seconds
        self._call_redis(
            self.redis.set,
            self.prefix + key,
            self._seal(key, identity, expires),
            px=millis,
        )

    def _seal(self, key: str, identity: Identity | None, expires: float) -> bytes:
        body = json.dumps(
            {
                "i": None if identity is None else _identity_to_json(identity),
                "e": expires,
            },
            separators=(",", ":"),
        ).encode()
        return self._tag(key, body) + body

    def _unseal(self, key: str, raw: bytes) -> Entry | None:
        tag, body = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(key, body)):
            logger.warning(
                "ignoring a Redis cache entry with a bad signature (key %s…)",
                key[:LOG_HASH_CHARS],
            )
            return None

        try:
            data = json.loads(body)
            identity = None if data["i"] is None else _identity_from_json(data["i"])
            return identity, float(data["e"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring an unreadable Redis cache entry")
            return None

    def _tag(self, key: str, body: bytes) -> bytes:
        # The key is part of the signed message, so a valid entry cannot be
        # copied under another token's key.
        mac = hmac.new(self._tag_key, key.encode() + b"\0" + body, hashlib.sha256)
        return mac.digest()[:_TAG_BYTES]

    def _call_redis(self, method: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        assert self.redis is not None
        try:
            result = method(*args, **kw)
        except redis.RedisError as exc:
            if not self._redis_down:
                self._redis_down = True
                logger.warning("Redis unavailable, using L1 and the provider: %s", exc)
            return None

        if self._redis_down:
            self._redis_down = False
            logger.warning("Redis is back")

        return result


def _entry_expiry(_key: str, entry: Entry, _now: float) -> float:
    return entry[1]


def _identity_to_json(identity: Identity) -> dict[str, Any]:
    return {
        "u": identity.user,
        "c": identity.consumer_id,
        "n": identity.consumer_name,
        "s": sorted(identity.scopes),
        "x": identity.expires_at,
        "h": identity.token_hash,
        "a": sorted(identity.audiences),
    }


def _identity_from_json(data: dict[str, Any]) -> Identity:
    return Identity(
        user=data["u"],
        consumer_id=data["c"],
        consumer_name=data["n"],
        scopes=frozenset(data["s"]),
        expires_at=int(data["x"]),
        token_hash=data["h"],
        audiences=frozenset(data.get("a", ())),
    )


def connect_redis(url: str) -> redis.Redis:
    """Open a Redis client for ``url`` with timeouts fit for the request path."""
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )
    return client
