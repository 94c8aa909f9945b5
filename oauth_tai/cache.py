"""The two cache tiers in front of the provider.

L1 is a bounded per-process cache (:mod:`oauth_tai.local_tier`); L2 is
Redis, shared by every process and host (:mod:`oauth_tai.shared_tier`).
Both hold the provider's answer about a token (an :class:`Identity`, or
``None`` for an inactive token) under a keyed hash of the token, never
the token. An answer is fresh for the shortest of the configured TTL and
the token's remaining life (the provider never lets a token outlive its
grant, so that bounds the grant's too); an answer already over is never
written. With ``max_stale``, L1 keeps an active answer that long past its
freshness, never past the token's expiry, for use only when the provider
cannot be reached.

Revocations end L2 entries where they are made and reach the L1 of every
process over the revocation channel (:mod:`oauth_tai.revocation`). A
process that cannot hear the channel keeps L1 entries only briefly, and
drops them all when it hears it again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Final

from oauth_tai.identity import Identity
from oauth_tai.local_tier import MISS, LocalTier, Miss
from oauth_tai.metrics import L1_ANSWERS, L2_ANSWERS, NEGATIVE_HITS
from oauth_tai.recent_revocations import RecentRevocations
from oauth_tai.redis_connect import RedisClient
from oauth_tai.redis_guard import RedisGuard, RedisUnavailable
from oauth_tai.revocation import Revocation, RevocationChannel
from oauth_tai.shared_tier import SharedEntry, SharedTier

# MISS and Miss live with L1 and are part of this module's interface too.
__all__ = [
    "LOG_HASH_CHARS",
    "MISS",
    "Miss",
    "TokenCache",
]

logger = logging.getLogger(__name__)

# Length of the hash shown in logs: enough to tell tokens apart in an
# incident, far too short to be any use to someone reading the log.
LOG_HASH_CHARS: Final = 12

# The fleet-wide single-flight lock: one process asks the provider about a
# token per window; the others wait for its answer in L2 at most that long,
# looking every LOCK_POLL_SECONDS, then ask themselves.
LOCK_SECONDS: Final = 2.0
LOCK_POLL_SECONDS: Final = 0.01


class TokenCache:
    """Cache provider answers in process (L1) and, optionally, in Redis (L2).

    :param secret: key material for the keyed hashes and the HMACs.
    :param ttl: longest an active answer is fresh, in seconds.
    :param negative_ttl: how long an inactive answer is kept, in seconds.
    :param max_stale: seconds L1 keeps an active answer past its freshness,
        for use only while the provider cannot answer; 0 turns it off.
    :param maxsize: entries held in L1.
    :param redis_client: the L2 client, or a function that opens it (see
        :class:`~oauth_tai.redis_guard.RedisGuard`), or ``None`` for L1 only.
    :param prefix: prepended to every Redis key and to the channel's name.
    :param clock: wall-clock seconds, compared with token expiries.
    :param monotonic: seconds for Redis backoff and lock waits.

    ``lock_waits`` counts the times this process waited for another to
    answer (see :meth:`claim`).
    """

    def __init__(
        self,
        secret: bytes,
        *,
        ttl: int = 300,
        negative_ttl: int = 5,
        max_stale: int = 0,
        maxsize: int = 100_000,
        redis_client: RedisClient | Callable[[], RedisClient] | None = None,
        prefix: str = "oauth-tai:",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hash_key = hashlib.sha256(b"oauth-tai token key\0" + secret).digest()
        # Keyed once; each key is a copy of it, cheaper than keying anew.
        self._keyed = hashlib.blake2b(key=self._hash_key, digest_size=32)
        # Copying a hash object is cheaper than making one.
        self._sha256 = hashlib.sha256()
        # The memo of keys: see key(). BLAKE2b is CPython's own code, where
        # a SHA-256 goes through OpenSSL: in a server, whose caches the
        # kernel's work empties between requests, OpenSSL's larger code
        # costs about 2 µs more a request.
        self._memo_hash = hashlib.blake2b(
            key=hashlib.sha256(b"oauth-tai key memo\0" + secret).digest(),
            digest_size=32,
        )
        self._memo: dict[bytes, str] = {}
        self._memo_size = maxsize
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_stale = max_stale
        self.prefix = prefix + "token:"
        self._clock = clock
        self._monotonic = monotonic
        self.local = LocalTier(maxsize, max_stale, clock)
        self.recent = RecentRevocations(clock)
        # Revoked keys whose tombstones or message did not reach Redis:
        # written and sent again once the channel is heard again.
        self._unwritten: set[str] = set()
        self._unwritten_lock = threading.Lock()
        self.lock_waits = 0

        self.redis = redis_client
        self.guard: RedisGuard | None = None
        self.shared: SharedTier | None = None
        self.channel: RevocationChannel | None = None
        if redis_client is not None:
            tag_key = hashlib.sha256(b"oauth-tai cache tag\0" + secret).digest()
            self.guard = RedisGuard(redis_client, clock=monotonic)
            self.guard.on_recovered = self._write_unwritten
            self.shared = SharedTier(self.guard, prefix, tag_key)
            self.channel = RevocationChannel(
                self.guard,
                prefix + "revocations",
                secret,
                on_revocation=self._heard,
                on_lost=self.suspend,
                on_joined=self.resume,
            )

    # -- keys -------------------------------------------------------------

    def key(self, token: str) -> str:
        """Return the keyed hash under which ``token`` is cached."""
        # The key is a hash of the token's SHA-256 digest, as the provider
        # evicts tokens it knows only by digest: two hashes. A token seen
        # before costs one, keyed, looked up in a memo of keys; the memo
        # holds hashes only and never leaves the process.
        memo_hash = self._memo_hash.copy()
        # "surrogatepass": a caller in the process may hand over a lone
        # surrogate, which no server decodes; it gets a key, and a refusal.
        encoded = token.encode("utf-8", "surrogatepass")
        memo_hash.update(encoded)
        short = memo_hash.digest()
        key = self._memo.get(short)
        if key is None:
            key = self._derive_key(encoded)
            if len(self._memo) >= self._memo_size:
                # Entries are pure functions of tokens: dropping them all
                # costs one hash more per token, never a wrong answer.
                self._memo.clear()
            self._memo[short] = key
        return key

    def _derive_key(self, encoded: bytes) -> str:
        digest = self._sha256.copy()
        digest.update(encoded)
        keyed = self._keyed.copy()
        keyed.update(digest.digest())
        return keyed.hexdigest()

    def key_for_digest(self, digest: bytes) -> str:
        """Return the cache key for a token known only by its SHA-256 digest.

        The provider stores tokens as SHA-256 digests; hashing the digest
        instead of the token lets it evict a revoked token it cannot see.
        """
        keyed = self._keyed.copy()
        keyed.update(digest)
        return keyed.hexdigest()

    def jti_hash(self, jti: str) -> str:
        """Return the keyed hash naming a JWT ``jti`` in Redis and messages."""
        keyed = self._keyed.copy()
        keyed.update(b"jti\0" + jti.encode("utf-8", "surrogatepass"))
        return keyed.hexdigest()

    # -- answers ------------------------------------------------------------

    def get(self, key: str) -> Identity | None | Miss:
        """Return the fresh answer for ``key`` from L1, else L2, else :data:`MISS`."""
        cached = self.local.get(key)
        if cached is not MISS:
            L1_ANSWERS.inc()
            if cached is None:
                NEGATIVE_HITS.inc()
            return cached

        if self.shared is None:
            return MISS

        shared = self._get_shared(self.shared, key)
        if shared is not MISS:
            L2_ANSWERS.inc()
            if shared is None:
                NEGATIVE_HITS.inc()
        return shared

    def get_local(self, key: str) -> Identity | None | Miss:
        """Return the fresh answer for ``key`` from L1 only, else :data:`MISS`."""
        return self.local.get(key)

    def get_stale(self, key: str) -> Identity | None:
        """Return an active answer L1 still keeps for ``key``, fresh or not.

        For use only when the provider cannot answer: ``None`` unless an
        active answer is within ``max_stale`` of its freshness and its
        token has not expired.
        """
        return self.local.get_stale(key)

    @property
    def epoch(self) -> int:
        """A number that changes with every eviction; pass it to :meth:`put`."""
        return self.local.epoch

    def put(
        self,
        key: str,
        identity: Identity | None,
        *,
        jti: str | None = None,
        epoch: int | None = None,
    ) -> None:
        """Cache the provider's answer: an identity, or ``None`` if inactive.

        :param jti: the token's JWT ID, so that revoking it ends the entry.
        :param epoch: :attr:`epoch` read before asking the provider; if an
            eviction happened since, the answer is not written.
        """
        now = self._clock()
        if identity is None:
            fresh = now + self.negative_ttl
        else:
            fresh = min(now + self.ttl, float(identity.expires_at))

        if fresh <= now:
            return

        jti_hash = None if jti is None else self.jti_hash(jti)
        if not self.local.put(key, identity, fresh, jti_hash, epoch):
            logger.debug("not caching an answer obtained before an eviction")
            return

        if self.shared is not None:
            entry = SharedEntry(identity, fresh, jti_hash)
            self.shared.write(key, entry, fresh - now)

    # -- the fleet-wide flight ----------------------------------------------

    @contextmanager
    def claim(self, key: str) -> Iterator[Identity | None | Miss]:
        """Hold, across processes, the right to ask the provider about ``key``.

        Yields :data:`MISS` when the caller should ask: it holds the lock,
        or Redis is unavailable, or the process that held the lock left no
        answer in time. Otherwise it yields the answer that process wrote.
        The lock is released on leaving the block.
        """
        shared = self.shared
        nonce: str | None = ""
        if shared is not None:
            try:
                nonce = shared.acquire(key, LOCK_SECONDS)
            except RedisUnavailable:
                nonce = ""

        if shared is None or nonce == "":
            yield MISS
            return

        if nonce is None:
            yield self._await_answer(shared, key)
            return

        try:
            yield MISS
        finally:
            shared.release(key, nonce)

    def _await_answer(self, shared: SharedTier, key: str) -> Identity | None | Miss:
        self.lock_waits += 1
        deadline = self._monotonic() + LOCK_SECONDS
        epoch = self.local.epoch
        while True:
            try:
                found, held = shared.peek(key)
            except RedisUnavailable:
                return MISS

            if found is not None:
                return self._take_shared(key, found, epoch)
            if not held or self._monotonic() >= deadline:
                return MISS

            time.sleep(LOCK_POLL_SECONDS)

    # -- revoking -----------------------------------------------------------

    def revoke(self, keys: Iterable[str]) -> None:
        """Revoke tokens by cache key, in both tiers and in every process.

        L2 gets an inactive answer in place of each entry, written over
        whatever is there: an answer obtained just before the revocation
        then cannot be written after it (see :meth:`SharedTier.write`).
        """
        revocation = Revocation(tuple(keys))
        if not revocation.keys:
            return

        self._revoke(revocation, announce=True)

    def revoked_elsewhere(self, keys: Iterable[str]) -> None:
        """Take in a revocation made by another process (the database feed).

        As :meth:`revoke`, but not announced on the channel again: the
        revoker did, or tried to.
        """
        revocation = Revocation(tuple(keys))
        if revocation.keys:
            self._revoke(revocation, announce=False)

    def _revoke(self, revocation: Revocation, *, announce: bool) -> None:
        self.recent.add(revocation.keys, self._clock() + self.ttl)
        self.local.forget(revocation)
        if self.shared is None:
            return

        written = self.shared.tombstone(
            list(revocation.keys), self._clock() + self.ttl, self.ttl
        )
        sent = not announce or (
            self.channel is not None and self.channel.publish(revocation)
        )
        if not (written and sent):
            with self._unwritten_lock:
                self._unwritten.update(revocation.keys)

    def revoke_digests(self, digests: Iterable[bytes]) -> None:
        """Revoke tokens by SHA-256 digest, as the provider's store reports them."""
        self.revoke(self.key_for_digest(digest) for digest in digests)

    def revoke_jti(self, jti: str, expires_at: float) -> None:
        """Refuse the JWT ``jti`` in every process until ``expires_at``.

        A revocation of a token already expired changes nothing and is
        dropped.
        """
        now = self._clock()
        if expires_at <= now:
            return

        jti_hash = self.jti_hash(jti)
        if self.shared is not None:
            self.shared.mark_jti(jti_hash, expires_at - now, now + self.ttl, self.ttl)
        revocation = Revocation(jtis=((jti_hash, float(expires_at)),))
        self.local.forget(revocation)
        if self.channel is not None:
            self.channel.publish(revocation)

    def jti_revoked(self, jti: str) -> bool:
        """Tell whether the JWT ``jti`` was revoked, here or elsewhere.

        Without Redis, only revocations this process heard of count.
        """
        jti_hash = self.jti_hash(jti)
        if self.local.jti_revoked(jti_hash):
            return True

        if self.shared is None:
            return False

        try:
            return self.shared.jti_marked(jti_hash)
        except RedisUnavailable:
            return False

    def evict(self, key: str) -> None:
        """Forget ``key`` in both tiers, in this process only."""
        self.local.evict(key)
        if self.shared is not None:
            self.shared.delete(key)

    def clear(self) -> None:
        """Forget everything in L1."""
        self.local.clear()

    # -- hearing revocations ------------------------------------------------

    def listen(self, wait: float = 0.0) -> bool:
        """Start hearing revocations from other processes (with Redis only).

        Until the first subscription, L1 keeps entries only briefly.
        Return whether revocations are heard, after waiting at most
        ``wait`` seconds for the subscription.
        """
        if self.channel is None:
            return True

        self.suspend()
        self.channel.start()
        return self.channel.wait_joined(wait)

    def close(self) -> None:
        """Stop hearing revocations."""
        if self.channel is not None:
            self.channel.stop()

    @property
    def hearing(self) -> bool:
        """Tell whether revocations made elsewhere reach L1 now."""
        return self.local.hearing

    def suspend(self) -> None:
        """Revocations may go unheard: drop L1, and keep new entries briefly."""
        self.local.clear(hearing=False)

    def resume(self) -> None:
        """Revocations are heard again: drop what L1 took in meanwhile.

        Revocations this process could not write to Redis or announce
        while it was away are written and announced now (and when any
        other call finds Redis answering again).
        """
        self.local.clear(hearing=True)
        self._write_unwritten()

    def _write_unwritten(self) -> None:
        # Redis answers again: write and announce what it missed meanwhile.
        with self._unwritten_lock:
            unwritten, self._unwritten = self._unwritten, set()
        if unwritten:
            logger.info("writing %d revocations Redis missed", len(unwritten))
            self._revoke(Revocation(tuple(unwritten)), announce=True)

    def _heard(self, revocation: Revocation) -> None:
        # A revocation announced by another process, on the channel.
        self.recent.add(revocation.keys, self._clock() + self.ttl)
        self.local.forget(revocation)

    # -- inside -------------------------------------------------------------

    def _get_shared(self, shared: SharedTier, key: str) -> Identity | None | Miss:
        epoch = self.local.epoch
        try:
            found = shared.read(key)
        except RedisUnavailable:
            return MISS

        return MISS if found is None else self._take_shared(key, found, epoch)

    def _take_shared(
        self, key: str, found: SharedEntry, epoch: int
    ) -> Identity | None | Miss:
        if found.fresh_until <= self._clock():
            return MISS

        if found.identity is not None and self.recent.doubts(key):
            # Redis may have missed the revocation's tombstone: ask.
            logger.debug(
                "token %s was revoked lately: not taking Redis's active answer",
                key[:LOG_HASH_CHARS],
            )
            return MISS

        if found.jti_hash is not None and self.local.jti_revoked(found.jti_hash):
            return None

        self.local.put(key, found.identity, found.fresh_until, found.jti_hash, epoch)
        return found.identity
