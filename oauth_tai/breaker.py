"""A circuit breaker that stops asking a provider that keeps failing.

After ``failures`` provider calls in a row fail, the breaker opens: for
``cooldown`` seconds no call is made, and requests are answered from stale
cache entries or refused with 503 at once, instead of each waiting for a
timeout. Then one request probes the provider (half-open): an answer closes
the breaker, another failure opens it for a new cool-down.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Final, Literal

from oauth_tai.metrics import CIRCUIT_STATE, CIRCUIT_VALUES

logger = logging.getLogger(__name__)

DEFAULT_FAILURES: Final = 5
DEFAULT_COOLDOWN_SECONDS: Final = 5.0

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Decide whether to call the provider, from how its last calls went.

    :param failures: consecutive failures that open the breaker; 0 never
        opens it.
    :param cooldown: seconds it stays open before one probe.
    :param clock: monotonic seconds.

    ``opened`` counts the times the breaker opened.

    ::

        if breaker.allow():
            try:
                answer = provider.introspect(token)
            except ProviderUnavailable:
                breaker.record_failure()
            else:
                breaker.record_success()
    """

    def __init__(
        self,
        failures: int = DEFAULT_FAILURES,
        cooldown: float = DEFAULT_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self.opened = 0
        self._state: State = "closed"
        self._failed = 0
        self._open_until = -math.inf
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        return self._state

    def allow(self) -> bool:
        """Tell whether this request may call the provider.

        While open, none may; once the cool-down is over, exactly one (the
        probe) may, until it reports how it went.
        """
        if self._state == "closed":
            return True

        with self._lock:
            now = self.clock()
            if now < self._open_until:
                return False

            # Half-open: this caller probes, and the cool-down restarts so
            # that a probe that never reports cannot close the door forever.
            self._state = "half-open"
            CIRCUIT_STATE.set(CIRCUIT_VALUES["half-open"])
            self._open_until = now + self.cooldown
            return True

    def record_success(self) -> None:
        """The provider answered (active or not): close the breaker."""
        if self._state == "closed" and self._failed == 0:
            return

        with self._lock:
            was = self._state
            self._state = "closed"
            self._failed = 0
            CIRCUIT_STATE.set(CIRCUIT_VALUES["closed"])

        if was != "closed":
            logger.warning("the provider answers again; calling it for every miss")

    def record_failure(self, reason: str = "") -> None:
        """The provider could not answer: count it, and open when due.

        The first failure after a success is logged, and so is opening;
        the failures in between are not.
        """
        reason = reason or "no reason given"
        with self._lock:
            self._failed += 1
            first = self._failed == 1
            probing = self._state == "half-open"
            opening = self.failures > 0 and (probing or self._failed >= self.failures)
            newly = opening and self._state == "closed"
            if opening:
                self._open_until = self.clock() + self.cooldown
                self._state = "open"
                CIRCUIT_STATE.set(CIRCUIT_VALUES["open"])
            if newly:
                self.opened += 1

        if first and not newly:
            logger.warning("the provider cannot answer: %s", reason)
        if newly:
            logger.warning(
                "the provider failed %d times in a row (%s): not calling it "
                "for %g s at a time until it answers",
                self.failures,
                reason,
                self.cooldown,
            )

    def retry_after(self) -> int:
        """Return whole seconds until the next probe, at least 1."""
        return max(1, math.ceil(self._open_until - self.clock()))
