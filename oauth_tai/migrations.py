"""Schema migrations: bring any database, new or old, to this code's schema.

A database records in ``schema_version`` the steps it has taken, one row
each. :func:`upgrade` takes the steps it lacks, in order and in one
transaction, holding a lock that makes a second process starting at the
same moment wait, then find nothing left to do: an advisory lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite. Both run DDL inside a
transaction, so a failing step leaves the database as it found it.

Steps are history. Once released, a step never changes, which is why step
1 holds its own copy of the first schema instead of reading
:mod:`oauth_tai.database` (the tables as the code uses them today). A test
checks that a database built by the steps matches that module. To change
the schema, change the table there and append a step here::

    def _add_logo(conn: Connection) -> None:
        conn.execute(text("ALTER TABLE consumers ADD COLUMN logo_url TEXT"))

    MIGRATIONS = (
        Migration(1, "the initial schema", _initial_schema),
        Migration(2, "timestamps in 64 bits", _widen_timestamps),
        Migration(3, "consumers.logo_url", _add_logo),
    )
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
)

from oauth_tai.db_lock import hold_lock
from oauth_tai.errors import SchemaTooNew

logger = logging.getLogger(__name__)

VERSION_TABLE: Final = "schema_version"

# The first of the two keys of PostgreSQL's advisory lock ("oTAI"); the
# second is the schema's name, so oauth-tai schemas side by side in one
# database migrate independently.
_LOCK_SPACE: Final = 0x6F544149

_versions = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", BigInteger, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema's history.

    :param version: its place in the list: 1, 2, 3...
    :param description: what it changes, for ``oauth-tai db version``.
    :param apply: makes the change on a connection inside the upgrade's
        transaction.
    """

    version: int
    description: str
    apply: Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What :func:`upgrade` found and did.

    ``before`` is 0 for an empty database; ``applied`` lists the versions of
    the steps taken, empty when the database was up to date.
    """

    before: int
    after: int
    applied: tuple[int, ...]


# -- the steps ---------------------------------------------------------------


def _initial_schema(conn: Connection) -> None:
    """Create the first schema's tables, leaving any that exist alone.

    Code from before migrations created whatever table it lacked each time
    it started, so on such a database this adds only what an older release
    did not have yet (``revocations``) and recognises the rest as is.
    """
    schema = MetaData()
    Table(
        "consumers",
        schema,
        Column("client_id", String(128), primary_key=True),
        Column("name", String(256), nullable=False),
        Column("secret_hash", String(256), nullable=False),
        Column("redirect_uri", Text, nullable=False),
        Column("enabled", Boolean, nullable=False),
        Column("auto_authorize", Boolean, nullable=False),
        Column("created_at", Integer, nullable=False),
    )
    Table(
        "users",
        schema,
        Column("username", String(128), primary_key=True),
        Column("password_hash", String(256), nullable=False),
        Column("created_at", Integer, nullable=False),
    )
    Table(
        "grants",
        schema,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("username", String(128), nullable=False),
        Column(
            "client_id",
            String(128),
            ForeignKey("consumers.client_id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("scope", Text, nullable=False),
        Column("authorized_at", Integer, nullable=False),
        Column("expires_at", Integer, nullable=False),
        Column("revoked_at", Integer),
        Index("ix_grants_user_consumer", "username", "client_id"),
    )
    Table(
        "codes",
        schema,
        Column("code_hash", String(64), primary_key=True),
        Column("grant_id", Integer, ForeignKey("grants.id", ondelete="CASCADE")),
        Column("client_id", String(128), nullable=False),
        Column("redirect_uri", Text, nullable=False),
        Column("challenge", String(128)),
        Column("challenge_method", String(16)),
        Column("expires_at", Integer, nullable=False),
        Column("used_at", Integer),
    )
    Table(
        "tokens",
        schema,
        Column("token_hash", String(64), primary_key=True),
        Column("kind", String(16), nullable=False),
        Column(
            "grant_id",
            Integer,
            ForeignKey("grants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("code_hash", String(64)),
        Column("issued_at", Integer, nullable=False),
        Column("expires_at", Integer, nullable=False),
        Column("revoked_at", Integer),
        Column("retired_at", Integer),
        Index("ix_tokens_grant", "grant_id"),
    )
    Table(
        "revocations",
        schema,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("token_hash", String(64), nullable=False),
        Column("revoked_at", Integer, nullable=False),
        Index("ix_revocations_revoked_at", "revoked_at"),
    )
    Table(
        "sessions",
        schema,
        Column("session_hash", String(64), primary_key=True),
        Column("username", String(128), nullable=False),
        Column("expires_at", Integer, nullable=False),
    )
    Table(
        "entries",
        schema,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("kind", String(16), nullable=False),
        Column("username", String(128), nullable=False),
        Column("content", Text, nullable=False),
        Column("verb", String(32), nullable=False),
        Column("generator_id", String(128)),
        Column("generator_name", String(256)),
        Column("published", Integer, nullable=False),
        Index("ix_entries_user", "username", "id"),
    )
    schema.create_all(conn, checkfirst=True)


INITIAL_TABLES: Final = (
    "consumers",
    "users",
    "grants",
    "codes",
    "tokens",
    "revocations",
    "sessions",
    "entries",
)

_TIMESTAMPS: Final = {
    "consumers": ("created_at",),
    "users": ("created_at",),
    "grants": ("authorized_at", "expires_at", "revoked_at"),
    "codes": ("expires_at", "used_at"),
    "tokens": ("issued_at", "expires_at", "revoked_at", "retired_at"),
    "revocations": ("revoked_at",),
    "sessions": ("expires_at",),
    "entries": ("published",),
}


def _widen_timestamps(conn: Connection) -> None:
    """Store seconds since 1970 in 64 bits, which 32 cannot hold after 2038.

    PostgreSQL's INTEGER has 32 bits; SQLite's holds 64 already.
    """
    if conn.dialect.name != "postgresql":
        return

    for table, columns in _TIMESTAMPS.items():
        changes = ", ".join(f"ALTER COLUMN {name} TYPE BIGINT" for name in columns)
        conn.execute(text(f"ALTER TABLE {table} {changes}"))


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "the initial schema", _initial_schema),
    Migration(2, "timestamps in 64 bits", _widen_timestamps),
)

LATEST: Final = MIGRATIONS[-1].version


# -- taking them ---------------------------------------------------------------


def current_version(engine: Engine) -> int:
    """Return the database's schema version: 0 when it has no tables.

    A database from before migrations (the tables, no ``schema_version``)
    is at version 1.
    """
    with engine.connect() as conn:
        return _version_of(conn)


def upgrade(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> Upgrade:
    """Take the steps the database lacks; return what was found and done.

    Raises :class:`SchemaTooNew` for a database at a version past the last
    step, and SQLAlchemy's errors when the database cannot be reached or a
    step fails; the transaction is then rolled back.
    """
    _check_order(migrations)
    latest = migrations[-1].version

    # Versions only grow: a database found up to date stays so, and the
    # common case needs no lock.
    with engine.connect() as conn:
        recorded = _recorded_version(conn)
    if recorded is not None and recorded > latest:
        raise SchemaTooNew(recorded, latest)
    if recorded == latest:
        return Upgrade(latest, latest, ())

    with _migration_lock(engine) as conn:
        recorded = _recorded_version(conn)
        before = _version_of(conn) if recorded is None else recorded
        if before > latest:
            raise SchemaTooNew(before, latest)

        if recorded is None:
            _versions.create(conn)
        if recorded is None and before == 1:
            _take(conn, migrations[0], "found in place")

        pending = [step for step in migrations if step.version > before]
        for step in pending:
            _take(conn, step)

    return Upgrade(before, latest, tuple(step.version for step in pending))


def _take(conn: Connection, step: Migration, note: str = "") -> None:
    logger.info("schema step %d: %s", step.version, step.description)
    step.apply(conn)
    description = f"{step.description} ({note})" if note else step.description
    conn.execute(
        insert(_versions).values(
            version=step.version,
            description=description,
            applied_at=int(time.time()),
        )
    )


def _version_of(conn: Connection) -> int:
    recorded = _recorded_version(conn)
    if recorded is not None:
        return recorded

    present = set(inspect(conn).get_table_names())
    return 1 if present & set(INITIAL_TABLES) else 0


def _recorded_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None

    newest = conn.execute(select(func.max(_versions.c.version))).scalar()
    return int(newest or 0)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """Yield a connection in a transaction that holds the migration lock."""
    with engine.connect() as conn, conn.begin():
        # On SQLite the whole database's write lock, so that a second
        # process waits here rather than read a version about to change.
        schema = ""
        if conn.dialect.name == "postgresql":
            schema = conn.execute(
                text("SELECT coalesce(current_schema(), '')")
            ).scalar_one()
        hold_lock(conn, _LOCK_SPACE, schema)
        yield conn


def _check_order(migrations: Sequence[Migration]) -> None:
    versions = [step.version for step in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3...; got {versions}")
