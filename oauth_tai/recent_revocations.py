"""Keys this process knows were revoked lately, to doubt Redis about them.

A revocation ends a token's L2 entry by writing a tombstone over it. When
Redis cannot take that write (down, stalled, failing over) the entry it
held before, an active answer, may still be there when Redis answers
again, or come back with a restart that kept its data. So every process
remembers the keys it revoked or heard revoked, by the channel or the
database feed, for as long as an entry written before the revocation
could live in L2 (the cache's TTL), and does not take an active answer
from L2 for them: it asks the provider instead.

Memory is bounded: past :data:`LIMIT` keys at once, the process stops
remembering keys one by one and doubts every active answer from L2 until
the newest of them could have ended, which is as safe and only slower.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Final

# Keys remembered one by one; a bulk revocation past this doubts all of L2.
LIMIT: Final = 100_000


class RecentRevocations:
    """Revoked keys, each until an L2 entry written before it must have ended.

    :param clock: wall-clock seconds, as the cache's.
    """

    def __init__(self, clock: Callable[[], float], limit: int = LIMIT) -> None:
        self._clock = clock
        self._limit = limit
        self._until: dict[str, float] = {}
        self._all_until = 0.0
        self._lock = threading.Lock()

    def add(self, keys: Iterable[str], until: float) -> None:
        """Remember ``keys`` as revoked until ``until``."""
        keys = list(keys)
        with self._lock:
            if len(self._until) + len(keys) > self._limit:
                now = self._clock()
                self._until = {k: u for k, u in self._until.items() if u > now}
            if len(self._until) + len(keys) > self._limit:
                self._all_until = max(self._all_until, until)
                return
            for key in keys:
                self._until[key] = max(until, self._until.get(key, 0.0))

    def doubts(self, key: str) -> bool:
        """Tell whether an active L2 answer for ``key`` may be out of date."""
        now = self._clock()
        return self._all_until > now or self._until.get(key, 0.0) > now
