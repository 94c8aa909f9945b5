"""The relational schema shared by the provider and the Connections app.

SQLAlchemy Core only: the same tables run on SQLite (the default) and
PostgreSQL. Tokens, codes and secrets are stored as hashes, never as
themselves.

The tables below are the schema as the code reads and writes it today;
:mod:`oauth_tai.migrations` is what creates and changes them in a database,
and a test checks that the two agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from oauth_tai.errors import ConfigurationError, DatabaseUnavailable
from oauth_tai.migrations import upgrade

SUPPORTED_BACKENDS = ("sqlite", "postgresql")

# Seconds since 1970, which pass 2**31 in 2038: 64 bits everywhere, spelled
# INTEGER on SQLite, whose INTEGER already holds 64 bits.
Timestamp = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

consumers = Table(
    "consumers",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("secret_hash", String(256), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("auto_authorize", Boolean, nullable=False, default=False),
    Column("created_at", Timestamp, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False),
    Column(
        "client_id",
        String(128),
        ForeignKey("consumers.client_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("scope", Text, nullable=False, default=""),
    Column("authorized_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
    Index("ix_grants_user_consumer", "username", "client_id"),
)

codes = Table(
    "codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("grant_id", Integer, ForeignKey("grants.id", ondelete="CASCADE")),
    Column("client_id", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("challenge", String(128)),
    Column("challenge_method", String(16)),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column(
        "grant_id",
        Integer,
        ForeignKey("grants.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("code_hash", String(64)),
    Column("issued_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
    Column("retired_at", Timestamp),
    Index("ix_tokens_grant", "grant_id"),
)

# Every access token revoked, in order: processes that cache answers (the
# server's workers, while the CLI revokes) read it to evict what they hold.
revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False),
    Column("revoked_at", Timestamp, nullable=False),
    Index("ix_revocations_revoked_at", "revoked_at"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("username", String(128), nullable=False),
    Column("expires_at", Timestamp, nullable=False),
)

entries = Table(
    "entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("username", String(128), nullable=False),
    Column("content", Text, nullable=False),
    Column("verb", String(32), nullable=False),
    Column("generator_id", String(128)),
    Column("generator_name", String(256)),
    Column("published", Timestamp, nullable=False),
    Index("ix_entries_user", "username", "id"),
)


def database_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means psycopg (version 3).

    Raises :class:`ConfigurationError` for a malformed URL or a database
    other than SQLite and PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {exc}") from exc

    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ConfigurationError(
            "OAUTH_TAI_DATABASE_URL must name SQLite or PostgreSQL, "
            f"not {parsed.get_backend_name()}"
        )

    return parsed


def connect_database(url: str) -> Engine:
    """Connect to ``url``, without looking at or changing its schema.

    Raises :class:`ConfigurationError` for an unusable URL or a missing
    driver, and :class:`DatabaseUnavailable` when the database cannot be
    reached.
    """
    parsed = database_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Request threads share the engine; SQLite serialises writers itself.
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        # A server restart closes pooled connections; test each before use
        # rather than fail the request that meets it.
        options["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            options["connect_args"] = {"connect_timeout": 10}

    try:
        engine = create_engine(parsed, **options)
    except (ImportError, NoSuchModuleError) as exc:
        raise ConfigurationError(
            f"no driver for {parsed.drivername}: for PostgreSQL install "
            "psycopg, e.g. pip install 'oauth-tai[postgres]'"
        ) from exc

    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)

    # Fail here, with a message that says where, rather than at a request.
    try:
        engine.connect().close()
    except DBAPIError as exc:
        engine.dispose()
        where = parsed.render_as_string(hide_password=True)
        raise DatabaseUnavailable(where, str(exc.orig or exc)) from exc

    return engine


def open_database(url: str) -> Engine:
    """Connect to ``url`` and bring its schema up to date.

    Raises what :func:`connect_database` raises, and
    :class:`~oauth_tai.errors.SchemaTooNew` for a database that a newer
    oauth-tai has upgraded.
    """
    engine = connect_database(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise

    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
