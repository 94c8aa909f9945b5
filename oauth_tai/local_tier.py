"""L1: the provider's answers kept in this process, bounded by entries.

An entry is fresh until its answer's life ends (set by
:class:`~oauth_tai.cache.TokenCache`) and is kept, for stale use only,
``max_stale`` seconds longer, never past its token's expiry. Every eviction
changes the tier's *epoch*: an answer obtained before an eviction is not
stored after it, as it may be the very answer that was just revoked.

While revocations from other processes go unheard, entries live at most
:data:`UNHEARD_SECONDS`, so a revocation missed meanwhile is not believed
for longer than that; hearing them again drops every entry.

Reading is the middleware's hot path, so a read takes no lock and changes
nothing: one dictionary lookup and one comparison with the clock. Writers
hold the lock. That is why the store evicts in insertion order (a least
recently *used* order would make every read a write); an entry's life is
bounded by the cache's TTL anyway, so a token in steady use comes back
from L2 at the next miss. When the store is full, entries past their
keeping are swept out first, so a flood of unknown tokens pushes out
expired answers before live ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from cachetools import FIFOCache

from oauth_tai.identity import Identity
from oauth_tai.revocation import Revocation

# While the revocation channel is not heard, an entry lives at most this
# long: the bound on how late a missed revocation is noticed.
UNHEARD_SECONDS: Final = 1.0

# Revoked jtis remembered in process; expired ones are swept past this.
_REVOKED_JTIS_SWEEP: Final = 1024

# A full store looks for expired entries at most this often; in between it
# evicts the oldest, so a write never scans the store twice in a second.
_SWEEP_SECONDS: Final = 1.0


class Miss:
    """The type of :data:`MISS`, the answer of a cache that knows nothing."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS: Final = Miss()

# An entry: the answer, until when it is fresh, until when it is kept (for
# stale use), and the keyed hash of its token's jti, if it has one.
Entry = tuple[Identity | None, float, float, str | None]


class LocalTier:
    """Answers in process, with stale keeping, epochs and revoked jtis.

    :param maxsize: entries held.
    :param max_stale: seconds an active answer is kept past its freshness.
    :param clock: wall-clock seconds, compared with token expiries.
    """

    def __init__(
        self, maxsize: int, max_stale: float, clock: Callable[[], float]
    ) -> None:
        self.maxsize = maxsize
        self.max_stale = max_stale
        self._clock = clock
        self._entries = _Entries(maxsize)
        self._lock = threading.Lock()
        self._epoch = 0
        self._unheard = False
        self._swept_at = float("-inf")
        self._revoked_jtis: dict[str, float] = {}

    @property
    def epoch(self) -> int:
        """A number that changes with every eviction."""
        return self._epoch

    @property
    def hearing(self) -> bool:
        """Tell whether revocations from other processes are heard."""
        return not self._unheard

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Identity | None | Miss:
        """Return the fresh answer for ``key``, or :data:`MISS`."""
        # No lock: a lookup in the store's dict is atomic, and a writer
        # replaces an entry whole, never changes one in place.
        try:
            entry = self._entries[key]
        except KeyError:
            return MISS
        return entry[0] if entry[1] > self._clock() else MISS

    def get_stale(self, key: str) -> Identity | None:
        """Return the active answer kept for ``key``, fresh or not, else ``None``."""
        try:
            entry = self._entries[key]
        except KeyError:
            return None
        # Keeping never lasts past the token's expiry (see put).
        return entry[0] if entry[2] > self._clock() else None

    def put(
        self,
        key: str,
        identity: Identity | None,
        fresh_until: float,
        jti_hash: str | None,
        epoch: int | None = None,
    ) -> bool:
        """Keep an answer; tell whether it was kept.

        It is not when ``epoch`` is given and an eviction happened since.
        """
        now = self._clock()
        with self._lock:
            if epoch is not None and epoch != self._epoch:
                return False

            if self._unheard:
                fresh_until = keep = min(fresh_until, now + UNHEARD_SECONDS)
            elif identity is None:
                keep = fresh_until
            else:
                keep = min(fresh_until + self.max_stale, float(identity.expires_at))

            entries = self._entries
            if key not in entries and len(entries) >= self.maxsize:
                self._sweep(now)
            entries[key] = (identity, fresh_until, keep, jti_hash)
            if jti_hash is not None:
                entries.by_jti[jti_hash] = key

        return True

    def jti_revoked(self, jti_hash: str) -> bool:
        """Tell whether this process heard of the revocation of ``jti_hash``."""
        return self._revoked_jtis.get(jti_hash, 0.0) > self._clock()

    def forget(self, revocation: Revocation) -> None:
        """Drop the revoked tokens' entries; remember the revoked jtis."""
        now = self._clock()
        with self._lock:
            self._epoch += 1
            for key in revocation.keys:
                self._entries.pop(key, None)

            for jti_hash, expires in revocation.jtis:
                if expires > now:
                    self._revoked_jtis[jti_hash] = expires
                indexed = self._entries.by_jti.get(jti_hash)
                if indexed is not None:
                    self._entries.pop(indexed, None)

            if len(self._revoked_jtis) > _REVOKED_JTIS_SWEEP:
                self._revoked_jtis = {
                    h: e for h, e in self._revoked_jtis.items() if e > now
                }

    def evict(self, key: str) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.pop(key, None)

    def clear(self, *, hearing: bool | None = None) -> None:
        """Drop every entry; with ``hearing``, say whether revocations are heard."""
        with self._lock:
            self._epoch += 1
            # A new store rather than emptying the old: readers holding the
            # old one finish their lookup, and a million entries go at once.
            self._entries = _Entries(self.maxsize)
            if hearing is not None:
                self._unheard = not hearing

    def _sweep(self, now: float) -> None:
        # Called with the lock held, only when the store is full.
        if now - self._swept_at < _SWEEP_SECONDS:
            return
        self._swept_at = now
        entries = self._entries
        for key in [key for key, entry in entries.items() if entry[2] <= now]:
            del entries[key]


class _Entries(FIFOCache[str, Entry]):
    """Entries in insertion order, with an index by jti hash."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.by_jti: dict[str, str] = {}

    def __delitem__(self, key: str) -> None:
        # Every removal (eviction, pop, sweep) passes here.
        jti_hash = self[key][3]
        super().__delitem__(key)
        if jti_hash is not None and self.by_jti.get(jti_hash) == key:
            del self.by_jti[jti_hash]
