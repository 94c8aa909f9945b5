"""Calling Redis from the request path without letting it fail a request.

Redis is an accelerator here, never a dependency: when it is down or slow,
requests are answered from the in-process cache and the provider. The guard
turns every Redis error into :class:`RedisUnavailable` for its caller to
handle, logs one warning per outage rather than one per request, counts
outages, and after a failure skips Redis for a short interval, so requests
do not each pay the timeout while it is gone. The first call after the
interval probes it; Redis that answers ends the outage by itself.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

import redis
from redis.cluster import RedisCluster

from oauth_tai.errors import OAuthTaiError
from oauth_tai.metrics import REDIS_ERRORS
from oauth_tai.redis_connect import REDIS_FAILURES, RedisClient

logger = logging.getLogger(__name__)

# After a failure, Redis is left alone this long: short enough that a
# restarted Redis is used again almost at once, long enough that a flood of
# requests costs one timeout per interval instead of one each.
REDIS_BACKOFF_SECONDS: Final = 1.0

T = TypeVar("T")


class RedisUnavailable(OAuthTaiError):
    """Redis failed this call, or is being skipped after a recent failure."""


class RedisGuard:
    """Run Redis calls with outage detection, one warning and a backoff.

    :param client: the Redis client, with bounded timeouts (see
        :mod:`oauth_tai.redis_connect`), or a function that makes it, called
        again after a failure until it succeeds.
    :param backoff: seconds Redis is skipped after a failed call.
    :param clock: monotonic seconds.

    ``outages`` counts the times Redis went from usable to failing;
    ``failures`` counts the calls that failed.
    """

    def __init__(
        self,
        client: RedisClient | Callable[[], RedisClient],
        *,
        backoff: float = REDIS_BACKOFF_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client: RedisClient | None = None
        if isinstance(client, redis.Redis | RedisCluster):
            self._client = client
            self._make: Callable[[], RedisClient] = lambda: client
        else:
            self._make = client
        self._making = threading.Lock()
        self.backoff = backoff
        self.clock = clock
        self.outages = 0
        self.failures = 0
        self._down = False
        self._retry_at = -math.inf
        self._lock = threading.Lock()
        # Called once when Redis answers again after an outage.
        self.on_recovered: Callable[[], None] | None = None

    @property
    def client(self) -> RedisClient:
        """The client, made now if it was not yet.

        Raises what making it raises (one of
        :data:`~oauth_tai.redis_connect.REDIS_FAILURES`), and
        :class:`RedisUnavailable` while another thread is making it.
        """
        client = self._client
        if client is not None:
            return client

        # One thread makes it; the others go without Redis meanwhile rather
        # than each wait for the same timeout.
        if not self._making.acquire(blocking=False):
            raise RedisUnavailable("the Redis client is being made")
        try:
            if self._client is None:
                self._client = self._make()
            return self._client
        finally:
            self._making.release()

    @property
    def down(self) -> bool:
        """Tell whether the last call failed and none has succeeded since."""
        return self._down

    def call(self, operation: Callable[[RedisClient], T], *, force: bool = False) -> T:
        """Return ``operation(client)``.

        Raises :class:`RedisUnavailable` when the call fails, and at once,
        without calling, while Redis is being skipped after a failure,
        unless ``force``: a revocation is rare and must not be skipped.
        """
        if self._down and not force and not self._may_probe():
            raise RedisUnavailable("skipping Redis after a recent failure")

        try:
            result = operation(self.client)
        except REDIS_FAILURES as exc:
            self.failed(exc)
            raise RedisUnavailable(str(exc)) from exc

        if self._down:
            self.recovered()

        return result

    def failed(self, exc: Exception) -> None:
        """Record a failed call: the first of an outage logs and counts it."""
        REDIS_ERRORS.inc()
        with self._lock:
            self.failures += 1
            self._retry_at = self.clock() + self.backoff
            if self._down:
                return

            self._down = True
            self.outages += 1

        logger.warning(
            "Redis unavailable (%s): answering from the in-process cache and "
            "the provider, trying Redis again every %g s",
            exc,
            self.backoff,
        )

    def recovered(self) -> None:
        """Record that Redis answered again, ending the outage."""
        with self._lock:
            if not self._down:
                return
            self._down = False

        logger.info("Redis answers again")
        if self.on_recovered is not None:
            self.on_recovered()

    def _may_probe(self) -> bool:
        # One caller per interval probes; the others skip Redis without
        # waiting for that probe to finish.
        with self._lock:
            now = self.clock()
            if now < self._retry_at:
                return False

            self._retry_at = now + self.backoff
            return True
