"""Revoking access tokens, and the feed that tells other processes about it.

Every revocation writes the digests of the access tokens it ended to the
``revocations`` table, numbered in commit order, and hands them to
``on_revoke`` so the caches in this process forget them at once. Processes
elsewhere follow the table by id, so an id is never given twice: the purge
keeps the newest row (see :meth:`TokenStore.purge
<oauth_tai.provider.store.TokenStore.purge>`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, text, update

from oauth_tai.database import revocations, tokens
from oauth_tai.provider.store.base import ACCESS, StoreBase


class RevocationFeed(StoreBase):
    """Revoke tokens in the database, and read back what was revoked."""

    def revocations_since(self, last_id: int) -> tuple[int, list[bytes]]:
        """Return the newest revocation id and the digests revoked after ``last_id``."""
        query = (
            select(revocations.c.id, revocations.c.token_hash)
            .where(revocations.c.id > last_id)
            .order_by(revocations.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()

        if not rows:
            return last_id, []
        return int(rows[-1].id), [bytes.fromhex(row.token_hash) for row in rows]

    def latest_revocation(self) -> int:
        with self.engine.connect() as conn:
            newest = conn.execute(select(func.max(revocations.c.id))).scalar()
        return int(newest or 0)

    def _revoke_tokens(self, conn: Connection, where: Any, now: int) -> list[bytes]:
        live = and_(where, tokens.c.revoked_at.is_(None))
        digests = [
            bytes.fromhex(row.token_hash)
            for row in conn.execute(
                select(tokens.c.token_hash).where(live, tokens.c.kind == ACCESS)
            )
        ]
        conn.execute(update(tokens).where(live).values(revoked_at=now))
        if digests:
            _lock_revocation_feed(conn)
            conn.execute(
                insert(revocations),
                [{"token_hash": d.hex(), "revoked_at": now} for d in digests],
            )
        return digests

    def _announce(self, digests: Iterable[bytes]) -> None:
        digests = list(digests)
        if digests and self.on_revoke is not None:
            self.on_revoke(digests)


def _lock_revocation_feed(conn: Connection) -> None:
    """Make revocations commit in the order of their ids, until ``conn`` ends.

    Followers read the feed by id. PostgreSQL numbers a row when it is
    inserted but shows it at commit: without this lock a revocation could
    commit after one with a higher id that a follower has read already, and
    never be seen. Inserts wait for each other here; reads do not. SQLite
    has one writer at a time anyway.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE revocations IN SHARE ROW EXCLUSIVE MODE"))
