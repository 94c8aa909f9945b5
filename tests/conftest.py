"""Fixtures shared by every part's tests: real Redis, real servers."""

from __future__ import annotations

import os
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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: SQLite in its own folder, in-process cache."""
    return Settings(var_dir=str(tmp_path / "var"), secret_key="test-" + "k" * 40)


@pytest.fixture
def provider(settings: Settings) -> Provider:
    return open_provider(settings)


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


def start_server(var_dir: Path, **extra: str) -> LiveServer:
    port = free_port()
    env = server_env(var_dir, **extra)
    var_dir.mkdir(parents=True, exist_ok=True)
    log_path = var_dir / "serve.log"
    with open(log_path, "wb") as log:
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
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh ``oauth-tai serve`` process with its own SQLite database."""
    server = start_server(tmp_path / "var")
    yield server
    stop_server(server)
