"""Single-flight: concurrent requests for one key share one slow call.

When many requests bring the same uncached token at once, only the first
asks the provider; the others wait for its answer. This is the in-process
half; :meth:`oauth_tai.cache.TokenCache.claim` is the fleet-wide half.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from oauth_tai.metrics import SINGLEFLIGHT_WAITS

T = TypeVar("T")

# A follower waits this long for its leader, then makes the call itself:
# longer than any provider call with a sane timeout, short enough that a
# stuck leader does not hold a request forever.
FLIGHT_WAIT_SECONDS: Final = 30.0


class _Flight(Generic[T]):
    """One call in progress, and what it returned or raised."""

    __slots__ = ("done", "error", "result", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: tuple[T] | None = None
        self.error: BaseException | None = None
        self.waiters = 0


class SingleFlight(Generic[T]):
    """Run one call per key at a time; concurrent callers share its outcome.

    :param wait: seconds a caller waits for the call in progress before
        making its own.

    ::

        flights = SingleFlight[Answer]()
        answer = flights.run(key, lambda: provider.introspect(token))
    """

    def __init__(self, wait: float = FLIGHT_WAIT_SECONDS) -> None:
        self.wait = wait
        self._flights: dict[str, _Flight[T]] = {}
        self._lock = threading.Lock()

    def run(self, key: str, call: Callable[[], T]) -> T:
        """Return ``call()``, or the outcome of the call already running for ``key``.

        An exception raised by the leading call is raised to its followers.
        """
        # The lock guards the table only, never the slow call: a request for
        # another token must not wait behind this one's provider call.
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                flight.waiters += 1
                SINGLEFLIGHT_WAITS.inc()

        if not leading:
            return self._follow(flight, call)

        try:
            outcome = call()
            flight.result = (outcome,)
            return outcome
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            # Unlisted before it is released: a request that arrives in
            # between starts a flight of its own, and ``call`` is expected
            # to look in the cache first, where this one left its answer.
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def waiters(self, key: str) -> int:
        """Return how many callers wait for the call in progress for ``key``."""
        with self._lock:
            flight = self._flights.get(key)
            return 0 if flight is None else flight.waiters

    def _follow(self, flight: _Flight[T], call: Callable[[], T]) -> T:
        if not flight.done.wait(self.wait):
            return call()

        if flight.error is not None:
            raise flight.error

        assert flight.result is not None
        return flight.result[0]
