"""Fixtures shared by every part's tests: real Redis, real databases, real servers.

Every test that uses a database (through ``settings``, ``provider``,
``database_url`` or ``live_server``) runs twice, on SQLite and on
PostgreSQL; ``--database=sqlite`` or ``--database=postgresql`` picks one.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from oauth_tai.database import database_url as parse_database_url
from oauth_tai.settings import Settings
from oauth_tai.system import Provider, open_provider

REDIS_HELP = (
    "These tests need a real Redis: set OAUTH_TAI_REDIS_URL (or REDIS_URL) to "
    "one, or install redis-server (Debian: apt-get install redis-server) so "
    "the tests can start a throwaway one."
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after 20 s")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: the configured one, or a throwaway redis-server."""
    configured = os.environ.get("OAUTH_TAI_REDIS_URL") or os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(REDIS_HELP)

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"oauth-tai-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


DATABASES = ("sqlite", "postgresql")

POSTGRES_DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

POSTGRES_HELP = (
    "These tests need a real PostgreSQL, where they create a schema of their "
    "own and drop it afterwards: set OAUTH_TAI_TEST_POSTGRES_URL to a "
    f"database they may use (default {POSTGRES_DEFAULT_URL}), or install one "
    "(Debian: apt-get install postgresql). To run only the SQLite half, pass "
    "--database=sqlite."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=("both", *DATABASES),
        default="both",
        help="run the database tests on SQLite, PostgreSQL or both (default)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Session scope groups the tests by database, so PostgreSQL is set up
    # once and the SQLite half runs first, without it.
    if "database" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("database")
        kinds = DATABASES if chosen == "both" else (chosen,)
        metafunc.parametrize("database", kinds, scope="session")


class PostgresSchemas:
    """Schemas of this test run on the test PostgreSQL, each dropped after use.

    Each schema is a database of its own: its URL puts only that schema on
    the search path, so nothing is created anywhere else, and names its
    connections after it, so they can be ended before it is dropped.
    """

    def __init__(self, url: URL) -> None:
        self.url = url
        self.run = f"oauth_tai_test_{secrets.token_hex(4)}"
        self.created: list[str] = []
        self._numbers = itertools.count()
        self._admin = create_engine(url, isolation_level="AUTOCOMMIT")
        self._conn: Connection = self._admin.connect()
        self._conn.execute(text("SET lock_timeout = '20s'"))

    def create(self) -> tuple[str, str]:
        """Create an empty schema; return its name and its database URL."""
        name = f"{self.run}_{next(self._numbers)}"
        self._conn.execute(text(f'CREATE SCHEMA "{name}"'))
        self.created.append(name)
        options = f"-csearch_path={name}"
        if self.url.query.get("options"):
            options = f"{self.url.query['options']} {options}"
        url = self.url.update_query_dict({"options": options, "application_name": name})
        if url.drivername == "postgresql+psycopg":
            # The plain form most users write; oauth-tai picks psycopg for it.
            url = url.set(drivername="postgresql")
        return name, url.render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        """End the schema's connections, then drop it with all it holds."""
        self._conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        self._conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            self.drop(name)
        self._conn.close()
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    """The test PostgreSQL; the test run fails, with how to provide one, without."""
    configured = os.environ.get("OAUTH_TAI_TEST_POSTGRES_URL") or POSTGRES_DEFAULT_URL
    url = parse_database_url(configured)
    if "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": "5"})
    try:
        schemas = PostgresSchemas(url)
    except OperationalError as exc:
        shown = url.render_as_string(hide_password=True)
        pytest.fail(f"cannot reach PostgreSQL at {shown}: {exc.orig}\n{POSTGRES_HELP}")

    yield schemas
    schemas.close()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, database: str) -> Iterator[str]:
    """This test's ``OAUTH_TAI_DATABASE_URL``, for an empty database.

    Empty on SQLite, which means the default file under the test's own var
    dir; on PostgreSQL, a new schema that is dropped after the test.
    """
    if database == "sqlite":
        yield ""
        return

    schemas: PostgresSchemas = request.getfixturevalue("postgres_schemas")
    name, url = schemas.create()
    yield url
    schemas.drop(name)


def database_env(database_url: str) -> dict[str, str]:
    """The environment that points a process at ``database_url``."""
    return {"OAUTH_TAI_DATABASE_URL": database_url} if database_url else {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test: its own empty database, in-process cache."""
    return Settings(
        var_dir=str(tmp_path / "var"),
        secret_key="test-" + "k" * 40,
        database_url=database_url,
    )


@pytest.fixture
def provider(settings: Settings) -> Iterator[Provider]:
    provider = open_provider(settings)
    yield provider
    provider.engine.dispose()


@dataclass
class Process:
    """A server process of the test's own, on a loopback port."""

    base: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class LiveServer:
    """``oauth-tai serve`` running as its own process on a loopback port."""

    base: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def cli(
        self, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``oauth-tai`` command against this server's database."""
        return run_cli(self.env, *args, input=input)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def settings(self) -> Settings:
        """The server's settings, to open its database from the test."""
        return Settings.load(self.env)


def server_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OAUTH_TAI_")}
    env["OAUTH_TAI_VAR_DIR"] = str(var_dir)
    env.update(extra)
    return env


def run_cli(
    env: dict[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauth_tai.cli", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_server(
    var_dir: Path, *options: str, port: int | None = None, **extra: str
) -> LiveServer:
    """Start ``oauth-tai serve`` with ``options``, and ``extra`` in its environment.

    A given ``port`` lets a test stop the server and start it again where
    its clients expect it; its log is then appended to.
    """
    log_path = var_dir / ("serve.log" if port is None else f"serve-{port}.log")
    port = free_port() if port is None else port
    env = server_env(var_dir, **extra)
    var_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oauth_tai.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *options,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process)
    except RuntimeError:
        process.kill()
        raise RuntimeError(log_path.read_text(errors="replace")) from None
    return LiveServer(f"http://127.0.0.1:{port}", env, process, log_path)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def live_server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    """A fresh ``oauth-tai serve`` process with its own empty database."""
    server = start_server(tmp_path / "var", **database_env(database_url))
    yield server
    stop_server(server)
