"""The relational schema shared by the provider and the Connections app.

SQLAlchemy Core only: the same tables run on SQLite (the default) and
PostgreSQL. Tokens, codes and secrets are stored as hashes, never as
themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
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
from sqlalchemy.engine import make_url

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
    Column("created_at", Integer, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", Integer, nullable=False),
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
    Column("authorized_at", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
    Column("revoked_at", Integer),
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
    Column("expires_at", Integer, nullable=False),
    Column("used_at", Integer),
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
    Column("issued_at", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
    Column("revoked_at", Integer),
    Column("retired_at", Integer),
    Index("ix_tokens_grant", "grant_id"),
)

# Every access token revoked, in order: processes that cache answers (the
# server's workers, while the CLI revokes) read it to evict what they hold.
revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False),
    Column("revoked_at", Integer, nullable=False),
    Index("ix_revocations_revoked_at", "revoked_at"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("username", String(128), nullable=False),
    Column("expires_at", Integer, nullable=False),
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
    Column("published", Integer, nullable=False),
    Index("ix_entries_user", "username", "id"),
)


def open_database(url: str) -> Engine:
    """Create an engine for ``url`` and the tables it lacks."""
    options: dict[str, Any] = {"future": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Request threads share the engine; SQLite serialises writers itself.
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}

    engine = create_engine(url, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)

    metadata.create_all(engine)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
