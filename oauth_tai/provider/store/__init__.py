"""The token store: grants, authorization codes and tokens, in the database.

A grant is a user's permission to one consumer; it starts at consent and
lasts ``grant_lifetime``. Codes and tokens hang off a grant and never
outlive it. Every revocation reports the digests of the access tokens it
ended through ``on_revoke``, so the caches in front can forget them at once.

Each concept has its module (:mod:`.grants`, :mod:`.codes`, :mod:`.tokens`,
:mod:`.revocations`); :class:`TokenStore` is the one object callers hold.
"""

from __future__ import annotations

from sqlalchemy import func, select

from oauth_tai import database
from oauth_tai.provider.store.base import Lifetimes
from oauth_tai.provider.store.codes import CodeStore
from oauth_tai.provider.store.tokens import IssuedTokenStore

__all__ = ["Lifetimes", "TokenStore"]


class TokenStore(IssuedTokenStore, CodeStore):
    """Keep grants, codes and tokens, and answer introspection.

    :param engine: the database.
    :param lifetimes: the code, access token and grant lifetimes.
    :param on_revoke: called with the SHA-256 digests of access tokens that
        were just revoked.
    :param clock: the time in seconds since the epoch; tests move it.
    """

    def purge(self) -> int:
        """Delete expired codes and tokens; return how many rows went.

        Old revocations go too, but for the newest, whatever its age.
        """
        # The tables by their module: in this package, ``codes``, ``tokens``
        # and ``revocations`` name the submodules.
        codes, tokens = database.codes, database.tokens
        revocations = database.revocations
        now = self.now()
        newest = select(func.max(revocations.c.id)).scalar_subquery()
        with self.engine.begin() as conn:
            # A revocation matters while the token could still be cached,
            # which is never past the longest access token lifetime. The
            # newest row stays: SQLite numbers a row one past the highest id
            # in the table, and followers read ids above the last they saw,
            # so an emptied feed would start over below them, unheard.
            conn.execute(
                revocations.delete().where(
                    revocations.c.revoked_at <= now - self.lifetimes.access_token,
                    revocations.c.id < newest,
                )
            )
            gone = conn.execute(
                codes.delete().where(codes.c.expires_at <= now)
            ).rowcount
            gone += conn.execute(
                tokens.delete().where(tokens.c.expires_at <= now)
            ).rowcount
        return gone
