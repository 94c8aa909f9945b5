"""What every part of the token store shares: the database, lifetimes and clock.

The store's parts (grants, codes, tokens, the revocation feed) are classes
that build on :class:`StoreBase`; :class:`~oauth_tai.provider.store.TokenStore`
puts them together over one database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

# The kinds of row in the tokens table.
ACCESS = "access"
REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long each thing lives, in seconds."""

    code: int = 60
    access_token: int = 43_200
    grant: int = 15_768_000


class StoreBase:
    """Hold what the store's parts share; its parameters are :class:`TokenStore`'s."""

    def __init__(
        self,
        engine: Engine,
        lifetimes: Lifetimes | None = None,
        on_revoke: Callable[[list[bytes]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.lifetimes = lifetimes or Lifetimes()
        self.on_revoke = on_revoke
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())
