"""L1: the provider's answers kept in this process, bounded by entries.

An entry is fresh until its answer's life ends (set by
:class:`~oauth_tai.cache.TokenCache`) and is kept, for stale use only,
``max_stale`` seconds longer, never past its token's expiry. Every eviction
changes the tier's *epoch*: an answer obtained before an eviction is not
stored after it, as it may be the very answer that was just revoked.

While revocations from other processes go unheard, entries live at most
:data:`UNHEARD_SECONDS`, so a revocation missed meanwhile is not believed
for longer than that; hearing them again drops every entry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from cachetools import TLRUCache

from oauth_tai.identity import Identity
from oauth_tai.revocation import Revocation

# While the revocation channel is not heard, an entry lives at most this
# long: the bound on how late a missed revocation is noticed.
UNHEARD_SECONDS: Final = 1.0

# Revoked jtis remembered in process; expired ones are swept past this.
_REVOKED_JTIS_SWEEP: Final = 1024


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
        self.max_stale = max_stale
        self._clock = clock
        self._entries = _Entries(maxsize, clock)
        self._lock = threading.Lock()
        self._epoch = 0
        self._unheard = False
        self._revoked_jtis: dict[str, float] = {}

    @property
    def epoch(self) -> int:
        """A number that changes with every eviction."""
        return self._epoch

    @property
    def hearing(self) -> bool:
        """Tell whether revocations from other processes are heard."""
        return not self._unheard

    def get(self, key: str) -> Identity | None | Miss:
        """Return the fresh answer for ``key``, or :data:`MISS`."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)

        return entry[0] if entry is not None and entry[1] > now else MISS

    def get_stale(self, key: str) -> Identity | None:
        """Return the active answer kept for ``key``, fresh or not, else ``None``."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)

        if entry is None or entry[0] is None or entry[0].expires_at <= now:
            return None
        return entry[0]

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

            self._entries[key] = (identity, fresh_until, keep, jti_hash)
            if jti_hash is not None:
                self._entries.by_jti[jti_hash] = key

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
            self._entries.clear()
            if hearing is not None:
                self._unheard = not hearing


class _Entries(TLRUCache[str, Entry]):
    """Entries dropped when no longer kept, with an index by jti hash."""

    def __init__(self, maxsize: int, clock: Callable[[], float]) -> None:
        super().__init__(maxsize, ttu=_kept_until, timer=clock)
        self.by_jti: dict[str, str] = {}

    def expire(self, time: float | None = None) -> list[tuple[str, Entry]]:
        expired = super().expire(time)
        for key, entry in expired:
            self._unindex(key, entry)
        return expired

    def popitem(self) -> tuple[str, Entry]:
        key, entry = super().popitem()
        self._unindex(key, entry)
        return key, entry

    def pop(self, key: str, default: Entry | None = None) -> Entry | None:  # type: ignore[override]
        entry: Entry | None = super().pop(key, default)
        if entry is not None:
            self._unindex(key, entry)
        return entry

    def clear(self) -> None:
        super().clear()
        self.by_jti.clear()

    def _unindex(self, key: str, entry: Entry) -> None:
        jti_hash = entry[3]
        if jti_hash is not None and self.by_jti.get(jti_hash) == key:
            del self.by_jti[jti_hash]


def _kept_until(_key: str, entry: Entry, _now: float) -> float:
    return entry[2]
