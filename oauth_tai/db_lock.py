"""Locks a transaction holds until it ends, on SQLite and on PostgreSQL.

Some writes must not interleave: two migrations of one schema, two
consents of one user to one consumer (each would find no live grant and
start one). Such a transaction takes a lock first and keeps it until it
commits or rolls back.
"""

from __future__ import annotations

from sqlalchemy import Connection, text


def hold_lock(conn: Connection, space: int, key: str) -> None:
    """Hold the lock on ``key`` in ``space`` until ``conn``'s transaction ends.

    Call it first in the transaction. On PostgreSQL it is an advisory lock
    on the pair, so other keys go on in parallel. SQLite has no such lock:
    it takes the database's write lock at once (``BEGIN IMMEDIATE``) rather
    than at the first write, so that a second transaction waits before it
    reads, not after; SQLite writers take turns anyway.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
            {"space": space, "key": key},
        )
