"""The revocation channel: every process hears of a revocation at once.

A process that revokes (the provider, the CLI, an admin call) ends the L2
entries itself and publishes what it revoked on a Redis channel named
``<prefix>revocations``; every process listening evicts its L1 entries
when the message arrives. Messages name cache keys and ``jti`` hashes
(keyed hashes, never a token) and are sealed with an HMAC, so a writer
without the secret cannot make processes drop or refuse anything.

A listener that loses its subscription cannot know what it missed. Until
it is subscribed again its cache keeps answers only briefly (see
:meth:`oauth_tai.cache.TokenCache.suspend`), and on subscribing again it
drops them all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import redis

from oauth_tai.metrics import REVOCATIONS_RECEIVED
from oauth_tai.redis_connect import REDIS_FAILURES
from oauth_tai.redis_guard import RedisGuard, RedisUnavailable

CHANNEL_RECEIVED = REVOCATIONS_RECEIVED.labels(channel="redis")

logger = logging.getLogger(__name__)

_TAG_BYTES: Final = 16

# A quiet channel is pinged this often; a connection that has said nothing
# for LISTEN_DEAD_SECONDS is taken as lost even without an error, as a
# stopped server or a dropped route never closes it. The listener looks for
# messages and for a stop every LISTEN_POLL_SECONDS.
LISTEN_PING_SECONDS: Final = 1.0
LISTEN_DEAD_SECONDS: Final = 3.0
LISTEN_POLL_SECONDS: Final = 0.1

# Between attempts to subscribe again: quick, as the cache is degraded
# until then, but not a busy loop against a Redis that is down.
RESUBSCRIBE_SECONDS: Final = 0.5


@dataclass(frozen=True, slots=True)
class Revocation:
    """What a message revokes: cache keys, and ``jti`` hashes with their expiry."""

    keys: tuple[str, ...] = ()
    jtis: tuple[tuple[str, float], ...] = ()


class RevocationChannel:
    """Publish revocations to the other processes, and listen for theirs.

    :param guard: the guarded Redis connection; publishing goes through it,
        listening uses a connection of its own from the same pool.
    :param name: the channel.
    :param secret: key material for the messages' HMAC.
    :param on_revocation: called, on the listener's thread, with each
        genuine message.
    :param on_lost: called when the subscription is lost.
    :param on_joined: called when subscribed, first or again.

    ``subscribed`` tells whether the listener holds a subscription now;
    ``joins`` counts its subscriptions, the first and every one after a loss.
    """

    def __init__(
        self,
        guard: RedisGuard,
        name: str,
        secret: bytes,
        *,
        on_revocation: Callable[[Revocation], None],
        on_lost: Callable[[], None],
        on_joined: Callable[[], None],
    ) -> None:
        self.guard = guard
        self.name = name
        self._tag_key = hashlib.sha256(b"oauth-tai revocations\0" + secret).digest()
        self._on_revocation = on_revocation
        self._on_lost = on_lost
        self._on_joined = on_joined
        self.subscribed = False
        self.joins = 0
        self._joined = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, revocation: Revocation) -> bool:
        """Send ``revocation`` to every listening process; tell whether it went."""
        message = self.seal(revocation)
        try:
            self.guard.call(lambda r: r.publish(self.name, message), force=True)
        except RedisUnavailable:
            logger.warning(
                "could not publish a revocation: processes that cached the "
                "tokens learn of it from the revocation feed, if they follow it"
            )
            return False
        return True

    def start(self) -> None:
        """Start listening on a daemon thread of this process."""
        if self._thread is not None:
            return

        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="revocation-channel", daemon=True
        )
        self._thread.start()

    def wait_joined(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a subscription; tell if there is one."""
        return self._joined.wait(timeout)

    def stop(self) -> None:
        """Stop listening; return once the listener has ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=LISTEN_DEAD_SECONDS)
            self._thread = None

    # -- messages ----------------------------------------------------------

    def seal(self, revocation: Revocation) -> bytes:
        body = json.dumps(
            {"k": list(revocation.keys), "j": [list(j) for j in revocation.jtis]},
            separators=(",", ":"),
        ).encode()
        return self._tag(body) + body

    def unseal(self, raw: bytes) -> Revocation | None:
        """Return the revocation in ``raw``, or ``None`` if it is not genuine."""
        tag, body = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(body)):
            logger.warning("ignoring a revocation message with a bad signature")
            return None

        try:
            data = json.loads(body)
            keys = tuple(str(k) for k in data["k"])
            jtis = tuple((str(h), float(e)) for h, e in data["j"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring an unreadable revocation message")
            return None

        return Revocation(keys, jtis)

    def _tag(self, body: bytes) -> bytes:
        message = self.name.encode() + b"\0" + body
        return hmac.new(self._tag_key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    # -- listening ----------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub: Any = None
            try:
                pubsub = self.guard.client.pubsub()
                self._listen(pubsub)
            except RedisUnavailable as exc:
                # Another thread is making the client: not a failure of ours.
                self._lose(exc, failed=False)
            except (*REDIS_FAILURES, OSError) as exc:
                self._lose(exc)
            except Exception as exc:
                # The listener must outlive any bug in handling a message.
                logger.exception("the revocation listener failed; starting over")
                self._lose(exc)
            finally:
                _close(pubsub)

            self._stop.wait(RESUBSCRIBE_SECONDS)

        self.subscribed = False
        self._joined.clear()

    def _listen(self, pubsub: Any) -> None:
        pubsub.subscribe(self.name)
        heard = pinged = time.monotonic()
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
            now = time.monotonic()
            if message is None:
                if now - heard >= LISTEN_DEAD_SECONDS:
                    raise redis.ConnectionError("the channel went silent")
                if self.subscribed and now - pinged >= LISTEN_PING_SECONDS:
                    pubsub.ping()
                    pinged = now
                continue

            heard = now
            kind = message.get("type")
            if kind == "subscribe":
                self._join()
            elif kind == "message" and isinstance(message.get("data"), bytes):
                revocation = self.unseal(message["data"])
                if revocation is not None:
                    CHANNEL_RECEIVED.inc(len(revocation.keys))
                    self._on_revocation(revocation)

    def _join(self) -> None:
        self._on_joined()
        self.subscribed = True
        self.joins += 1
        self._joined.set()
        self.guard.recovered()
        logger.info("listening for revocations on %s", self.name)

    def _lose(self, exc: Exception, *, failed: bool = True) -> None:
        # Before the first subscription the cache is degraded already.
        if self.subscribed:
            self.subscribed = False
            self._joined.clear()
            self._on_lost()
            logger.info(
                "lost the revocation channel; in-process entries are kept "
                "briefly until it is back"
            )
        if failed:
            self.guard.failed(exc)


def _close(pubsub: Any) -> None:
    if pubsub is None:
        return

    try:
        pubsub.close()
    except (*REDIS_FAILURES, OSError):
        pass
