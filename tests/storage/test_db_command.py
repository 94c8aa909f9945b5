"""`oauth-tai db upgrade` and `oauth-tai db version`, and database URLs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oauth_tai.database import connect_database, database_url, open_database
from oauth_tai.errors import ConfigurationError, DatabaseUnavailable
from oauth_tai.migrations import LATEST, MIGRATIONS
from oauth_tai.settings import Settings
from tests.conftest import database_env, free_port, run_cli, server_env

ALL_STEPS = list(range(1, LATEST + 1))


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return server_env(tmp_path / "var", **database_env(database_url))


def _json(env: dict[str, str], *args: str) -> object:
    result = run_cli(env, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_version_then_upgrade_then_nothing_left(env: dict[str, str]) -> None:
    assert _json(env, "db", "version") == {
        "version": 0,
        "latest": LATEST,
        "pending": [
            {"version": step.version, "description": step.description}
            for step in MIGRATIONS
        ],
    }

    assert _json(env, "db", "upgrade") == {
        "before": 0,
        "after": LATEST,
        "applied": ALL_STEPS,
    }
    assert _json(env, "db", "upgrade")["applied"] == []
    assert _json(env, "db", "version") == {
        "version": LATEST,
        "latest": LATEST,
        "pending": [],
    }
    shown = run_cli(env, "db", "version")
    assert shown.stdout.strip() == f"Schema version {LATEST}, up to date."


def test_a_database_from_before_migrations_is_upgraded_from_step_1(
    env: dict[str, str],
) -> None:
    engine = connect_database(Settings.load(env).effective_database_url)
    with engine.begin() as conn:
        MIGRATIONS[0].apply(conn)
    engine.dispose()

    assert _json(env, "db", "version")["version"] == 1
    told = run_cli(env, "db", "upgrade")

    assert told.returncode == 0, told.stderr
    assert told.stdout.startswith(
        f"Upgraded the database schema from version 1 to {LATEST}"
    )
    assert _json(env, "db", "version")["pending"] == []


def test_two_upgrades_started_together_both_succeed(env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "oauth_tai.cli", "db", "upgrade", "--json"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    answers = [process.communicate(timeout=60)[0] for process in processes]

    assert [process.returncode for process in processes] == [0, 0]
    applied = sorted(json.loads(answer)["applied"] for answer in answers)
    assert applied == [[], ALL_STEPS]


def test_every_command_upgrades_first(env: dict[str, str]) -> None:
    assert _json(env, "clients", "count") == {"count": 0}
    assert _json(env, "db", "version")["version"] == LATEST


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    """Nothing listens on the port: the error says where, without the password."""
    port = free_port()
    url = f"postgresql://oauth:hunter2@127.0.0.1:{port}/oauth"
    env = server_env(tmp_path / "var", OAUTH_TAI_DATABASE_URL=url)

    for command in (("db", "upgrade"), ("db", "version"), ("clients", "list")):
        result = run_cli(env, *command)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("oauth-tai: error: cannot use the database")
        assert f"@127.0.0.1:{port}/oauth" in result.stderr
        assert "hunter2" not in result.stderr
        assert "Traceback" not in result.stderr

    with pytest.raises(DatabaseUnavailable):
        open_database(url)


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@db.example/oauth", "postgresql+psycopg"),
        ("postgres://u@db.example/oauth", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/oauth", "postgresql+psycopg"),
        ("sqlite:///var/oauth-tai.db", "sqlite"),
    ],
)
def test_database_urls_name_their_driver(given: str, driver: str) -> None:
    assert database_url(given).drivername == driver


@pytest.mark.parametrize("given", ["mysql://u@db.example/oauth", "not a url"])
def test_other_databases_are_refused(given: str) -> None:
    with pytest.raises(ConfigurationError):
        database_url(given)
