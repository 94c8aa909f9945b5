"""Fixtures for the cache tests: Redis servers of their own, counting providers.

A test that stops, restarts or pauses Redis does it to a ``redis-server``
it started on a loopback port of its own, never to the shared one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from webtest import TestApp

from oauth_tai.cache import TokenCache
from oauth_tai.identity import Identity, get_identity
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.redis_connect import connect_redis
from oauth_tai.system import Provider
from oauth_tai.validators import TokenValidator
from tests.conftest import (
    REDIS_HELP,
    LiveServer,
    free_port,
    start_server,
    wait_for_port,
)
from tests.redis_topologies import ClusterRedis, SentinelRedis, TlsRedis, UnixRedis

SECRET = b"cache-suite-secret"
CLIENT_ID = "notes-app"
CLIENT_NAME = "Notes App"
USER = "alice"

# Bounds for waiting on something another thread or process does; they
# bound a wait, they measure nothing.
DEADLINE_SECONDS = 10.0

T = TypeVar("T")


def eventually(check: Callable[[], T], deadline: float = DEADLINE_SECONDS) -> T:
    """Return ``check()`` once it is truthy; fail when ``deadline`` passes."""
    give_up = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= give_up:
            pytest.fail(f"still not true after {deadline} s: {check}")
        time.sleep(0.01)


def identity(expires_at: float, user: str = "alice") -> Identity:
    """An identity as the provider vouches for one, until ``expires_at``."""
    return Identity(
        user=user,
        consumer_id="notes-app",
        consumer_name="Notes App",
        scopes=frozenset({"connections"}),
        expires_at=int(expires_at),
        token_hash="0123456789ab",
    )


class Clock:
    """Seconds that a test moves by hand."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RedisServer:
    """A throwaway ``redis-server`` on a loopback port, to stop and start again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(REDIS_HELP)
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        """End the server at once, as a crash would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Stop the server from answering while its connections stay open."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may kill, restart and pause."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.process is not None:
        server.resume()
        server.kill()


Topology = TypeVar("Topology", SentinelRedis, ClusterRedis, TlsRedis, UnixRedis)


def _running(
    kind: type[Topology], factory: pytest.TempPathFactory, name: str
) -> Iterator[Topology]:
    topology = kind(factory.mktemp(name))
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelRedis]:
    """A master behind a Sentinel, each with a password, for the whole run."""
    yield from _running(SentinelRedis, tmp_path_factory, "sentinel")


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A server that speaks TLS only, for the whole run."""
    yield from _running(TlsRedis, tmp_path_factory, "tls")


@pytest.fixture(scope="session")
def redis_unix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnixRedis]:
    """A server on a Unix socket, for the whole run."""
    yield from _running(UnixRedis, tmp_path_factory, "unix")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRedis]:
    """A Redis Cluster of three masters, for the whole run."""
    yield from _running(ClusterRedis, tmp_path_factory, "cluster")


class CountingValidator:
    """Pass every question to ``inner``, count them, and hold them at a gate.

    While ``gate`` is not set, a call waits at it (at most the deadline),
    so a test can see which requests reached the provider before any of
    them has an answer.
    """

    def __init__(self, inner: TokenValidator, *, gated: bool = False) -> None:
        self.inner = inner
        self.calls = 0
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self._lock = threading.Lock()

    def introspect(self, token: str) -> Mapping[str, Any] | None:
        with self._lock:
            self.calls += 1
        self.gate.wait(DEADLINE_SECONDS)
        return self.inner.introspect(token)


def echo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    identity = get_identity(environ)
    body = str(identity.user if identity else None).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Grant:
    """A user's grant to a consumer in the provider's real store."""

    provider: Provider
    grant_id: int

    def issue(self, expires_in: int = 3600) -> str:
        token = secrets.token_urlsafe(32)
        self.provider.store.issue(self.grant_id, token, None, expires_in)
        return token


@pytest.fixture
def grant(provider: Provider) -> Grant:
    provider.registry.add(CLIENT_ID, CLIENT_NAME, "http://127.0.0.1:9/cb")
    provider.users.add(USER, "alice-password")
    return Grant(provider, provider.store.consent(USER, CLIENT_ID, "connections"))


@dataclass
class Process:
    """One middleware process: its own cache tiers, in front of a validator."""

    cache: TokenCache
    middleware: TrustAssociationMiddleware
    web: TestApp

    def status(self, token: str) -> int:
        response = self.web.get("/", headers=bearer(token), expect_errors=True)
        return int(response.status_int)


def process(
    validator: TokenValidator,
    redis_url: str | None = None,
    prefix: str = "oauth-tai:",
    **options: Any,
) -> Process:
    """A middleware with a cache of its own, sharing ``redis_url`` if given."""
    breaker = options.pop("breaker", None)
    secret = options.pop("secret", SECRET)
    client = None if redis_url is None else connect_redis(redis_url)
    cache = TokenCache(secret, redis_client=client, prefix=prefix, **options)
    middleware = TrustAssociationMiddleware(echo, validator, cache, breaker=breaker)
    return Process(cache, middleware, TestApp(middleware))


Spawn = Callable[..., Process]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Make processes (see :func:`process`); ``listen=True`` starts their
    revocation listener. Listeners and connections end with the test."""
    made: list[Process] = []

    def make(validator: TokenValidator, *args: Any, **options: Any) -> Process:
        listen = options.pop("listen", False)
        each = process(validator, *args, **options)
        made.append(each)
        if listen:
            each.cache.listen()
        return each

    yield make
    for each in made:
        each.cache.close()
        if each.cache.redis is not None:
            each.cache.redis.close()


def start_provider(var_dir: Path, port: int, **env: str) -> LiveServer:
    """``oauth-tai serve`` on ``port``, so that it can come back on the same one."""
    return start_server(var_dir, port=port, **env)
