"""Schema migrations on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, MetaData, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from oauth_tai.connections.entries import EntryStore
from oauth_tai.database import connect_database, metadata, open_database
from oauth_tai.errors import SchemaTooNew
from oauth_tai.migrations import (
    INITIAL_TABLES,
    LATEST,
    MIGRATIONS,
    VERSION_TABLE,
    Migration,
    Upgrade,
    current_version,
    upgrade,
)
from oauth_tai.provider.hashing import hash_password, token_hash
from oauth_tai.provider.store import Lifetimes
from oauth_tai.settings import Settings
from oauth_tai.system import open_provider

NOW = int(time.time())


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """A connection to this test's empty database; nothing created yet."""
    engine = connect_database(settings.effective_database_url)
    yield engine
    engine.dispose()


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(
                select(func.count()).select_from(text(table))
            ).scalar_one()
            for table in INITIAL_TABLES
        }


def _versions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT version FROM {VERSION_TABLE}"))
        return sorted(row.version for row in rows)


def _reflected(conn: Connection) -> dict[str, Any]:
    """The tables in the database, as comparable plain values."""
    found = inspect(conn)
    tables = sorted(set(found.get_table_names()) - {VERSION_TABLE})
    return {
        table: {
            "columns": {
                column["name"]: (
                    column["type"].compile(conn.dialect),
                    column["nullable"],
                )
                for column in found.get_columns(table)
            },
            "primary_key": sorted(
                found.get_pk_constraint(table)["constrained_columns"]
            ),
            "foreign_keys": sorted(
                (
                    tuple(key["constrained_columns"]),
                    key["referred_table"],
                    tuple(key["referred_columns"]),
                    key["options"].get("ondelete"),
                )
                for key in found.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (index["name"], tuple(index["column_names"]))
                for index in found.get_indexes(table)
            ),
        }
        for table in tables
    }


def _declared(schema: MetaData, conn: Connection) -> dict[str, Any]:
    """The tables as ``oauth_tai.database`` declares them, the same way."""
    return {
        table.name: {
            "columns": {
                column.name: (column.type.compile(conn.dialect), column.nullable)
                for column in table.columns
            },
            "primary_key": sorted(column.name for column in table.primary_key),
            "foreign_keys": sorted(
                (
                    (key.parent.name,),
                    key.column.table.name,
                    (key.column.name,),
                    key.ondelete,
                )
                for key in table.foreign_keys
            ),
            "indexes": sorted(
                (index.name, tuple(column.name for column in index.columns))
                for index in table.indexes
            ),
        }
        for table in sorted(schema.tables.values(), key=lambda t: t.name)
    }


def _old_rows(conn: Connection) -> None:
    """Rows as the code before migrations wrote them, in plain SQL."""
    conn.execute(
        text(
            "INSERT INTO consumers (client_id, name, secret_hash, redirect_uri,"
            " enabled, auto_authorize, created_at) VALUES"
            " ('old-app', 'Old App', :secret, 'https://old.example/cb',"
            " :yes, :no, :created)"
        ),
        {
            "secret": hash_password("old-app-secret"),
            "yes": True,
            "no": False,
            "created": NOW - 1000,
        },
    )
    conn.execute(
        text(
            "INSERT INTO users (username, password_hash, created_at)"
            " VALUES ('olga', :password, :created)"
        ),
        {"password": hash_password("olga-password"), "created": NOW - 1000},
    )
    conn.execute(
        text(
            "INSERT INTO grants (username, client_id, scope, authorized_at,"
            " expires_at) VALUES ('olga', 'old-app', 'connections', :at, :until)"
        ),
        {"at": NOW - 100, "until": NOW + 100_000},
    )
    grant_id = conn.execute(text("SELECT id FROM grants")).scalar_one()
    conn.execute(
        text(
            "INSERT INTO tokens (token_hash, kind, grant_id, issued_at, expires_at)"
            " VALUES (:access, 'access', :grant, :at, :until),"
            " (:refresh, 'refresh', :grant, :at, :grant_until)"
        ),
        {
            "access": token_hash("old-access-token"),
            "refresh": token_hash("old-refresh-token"),
            "grant": grant_id,
            "at": NOW - 100,
            "until": NOW + 3600,
            "grant_until": NOW + 100_000,
        },
    )
    conn.execute(
        text(
            "INSERT INTO codes (code_hash, grant_id, client_id, redirect_uri,"
            " expires_at) VALUES (:code, :grant, 'old-app',"
            " 'https://old.example/cb', :until)"
        ),
        {"code": token_hash("old-code"), "grant": grant_id, "until": NOW + 60},
    )
    conn.execute(
        text("INSERT INTO revocations (token_hash, revoked_at) VALUES (:digest, :at)"),
        {"digest": token_hash("older-access-token"), "at": NOW - 50},
    )
    conn.execute(
        text(
            "INSERT INTO sessions (session_hash, username, expires_at)"
            " VALUES (:session, 'olga', :until)"
        ),
        {"session": token_hash("old-session"), "until": NOW + 3600},
    )
    conn.execute(
        text(
            "INSERT INTO entries (kind, username, content, verb, generator_id,"
            " generator_name, published) VALUES ('status', 'olga',"
            " 'Written before the upgrade', 'post', 'old-app', 'Old App', :at)"
        ),
        {"at": NOW - 10},
    )


def _pre_migrations_database(engine: Engine, without: str | None = None) -> None:
    """Make the database the code before migrations left, with rows."""
    with engine.begin() as conn:
        MIGRATIONS[0].apply(conn)
        _old_rows(conn)
        if without is not None:
            conn.execute(text(f"DROP TABLE {without}"))


def test_an_empty_database_takes_every_step(engine: Engine) -> None:
    assert current_version(engine) == 0

    done = upgrade(engine)

    assert done == Upgrade(0, LATEST, tuple(range(1, LATEST + 1)))
    assert current_version(engine) == LATEST
    assert _versions(engine) == list(range(1, LATEST + 1))
    assert set(inspect(engine).get_table_names()) == {*INITIAL_TABLES, VERSION_TABLE}


def test_the_steps_build_the_schema_the_code_declares(engine: Engine) -> None:
    """Changing a table in oauth_tai.database without a step fails here."""
    upgrade(engine)

    with engine.connect() as conn:
        assert _reflected(conn) == _declared(metadata, conn)


def test_a_second_upgrade_does_nothing(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        _old_rows(conn)

    assert upgrade(engine) == Upgrade(LATEST, LATEST, ())
    open_database(engine.url.render_as_string(hide_password=False)).dispose()

    assert _versions(engine) == list(range(1, LATEST + 1))
    assert _counts(engine) == {
        **dict.fromkeys(INITIAL_TABLES, 1),
        "tokens": 2,
    }


@pytest.mark.parametrize("missing", [None, "revocations"])
def test_a_database_from_before_migrations_keeps_its_rows(
    engine: Engine, settings: Settings, missing: str | None
) -> None:
    """Tables without schema_version are step 1, as found; rows survive.

    The first releases had no ``revocations`` table and created it at
    start; such a database gains it as step 1 is recognised.
    """
    _pre_migrations_database(engine, without=missing)
    before = _counts_of(engine, missing)
    assert current_version(engine) == 1

    done = upgrade(engine)

    assert done == Upgrade(1, LATEST, tuple(range(2, LATEST + 1)))
    assert _versions(engine) == list(range(1, LATEST + 1))
    after = _counts(engine)
    assert {k: v for k, v in after.items() if k != missing} == before
    with engine.connect() as conn:
        assert _reflected(conn) == _declared(metadata, conn)

    # The rows still mean what they meant, to the code of today.
    provider = open_provider(settings)
    try:
        assert provider.registry.authenticate("old-app", "old-app-secret")
        assert provider.users.authenticate("olga", "olga-password")
        claims = provider.store.introspect("old-access-token")
        assert claims is not None and claims["username"] == "olga"
        refresh = provider.store.find_refresh("old-refresh-token")
        assert refresh is not None and refresh.active
        [entry] = EntryStore(provider.engine).list("olga")
        assert entry.content == "Written before the upgrade"

        # New rows take ids after the old ones, and times past 2038 fit.
        provider.store.lifetimes = Lifetimes(grant=2**31)
        grant = provider.store.consent("nils", "old-app", "connections")
        assert grant == refresh.grant_id + 1
        provider.store.issue(grant, "new-access-token", None, 3600)
        assert provider.store.introspect("new-access-token") is not None
        assert provider.store.grants_of("nils")[0].expires_at > 2**31
    finally:
        provider.engine.dispose()


def _counts_of(engine: Engine, missing: str | None) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(
                select(func.count()).select_from(text(table))
            ).scalar_one()
            for table in INITIAL_TABLES
            if table != missing
        }


def _add_logo_url(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE consumers ADD COLUMN logo_url TEXT"))
    conn.execute(
        text("UPDATE consumers SET logo_url = 'https://' || client_id || '/logo'")
    )


def test_a_new_step_adds_a_column_and_keeps_every_row(
    engine: Engine, settings: Settings
) -> None:
    """The way a future release changes the schema, on a copy of the list."""
    upgrade(engine)
    with engine.begin() as conn:
        _old_rows(conn)
    before = _counts(engine)
    steps = (*MIGRATIONS, Migration(LATEST + 1, "consumers.logo_url", _add_logo_url))

    done = upgrade(engine, steps)

    assert done == Upgrade(LATEST, LATEST + 1, (LATEST + 1,))
    assert _counts(engine) == before
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT client_id, name, logo_url FROM consumers")
        ).one()
    assert tuple(row) == ("old-app", "Old App", "https://old-app/logo")
    assert upgrade(engine, steps).applied == ()

    # The code of today has not heard of step LATEST + 1: it refuses to run
    # on the database rather than guess what that step changed.
    with pytest.raises(SchemaTooNew) as refused:
        open_database(settings.effective_database_url)
    assert refused.value.version == LATEST + 1
    assert "upgrade oauth-tai" in str(refused.value)


def test_a_failing_step_leaves_the_database_as_it_was(engine: Engine) -> None:
    """Steps run in one transaction: DDL included, all or nothing."""
    upgrade(engine)
    with engine.begin() as conn:
        _old_rows(conn)

    def half_done(conn: Connection) -> None:
        _add_logo_url(conn)
        conn.execute(text("DELETE FROM entries"))
        conn.execute(text("SELECT no_such_column FROM consumers"))

    steps = (*MIGRATIONS, Migration(LATEST + 1, "broken", half_done))
    with pytest.raises(SQLAlchemyError):
        upgrade(engine, steps)

    assert current_version(engine) == LATEST
    assert _counts(engine)["entries"] == 1
    columns = {column["name"] for column in inspect(engine).get_columns("consumers")}
    assert "logo_url" not in columns


def test_processes_starting_at_once_upgrade_once(settings: Settings) -> None:
    """Four processes open one new database at the same moment."""
    url = settings.effective_database_url
    engines = [connect_database(url) for _ in range(4)]
    start = threading.Barrier(len(engines))

    def start_up(engine: Engine) -> Upgrade:
        start.wait()
        return upgrade(engine)

    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            results = list(pool.map(start_up, engines))
    finally:
        for engine in engines:
            engine.dispose()

    took = sorted(result.applied for result in results)
    assert took == [(), (), (), tuple(range(1, LATEST + 1))]
    check = connect_database(url)
    try:
        assert _versions(check) == list(range(1, LATEST + 1))
    finally:
        check.dispose()


def test_steps_must_be_numbered_in_order(engine: Engine) -> None:
    skipping = (MIGRATIONS[0], Migration(3, "no step 2", _add_logo_url))
    with pytest.raises(ValueError):
        upgrade(engine, skipping)
    assert current_version(engine) == 0
