"""/healthz, /readyz and /metrics: cheap, unauthenticated and tight-lipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import webtest
from sqlalchemy import create_engine

from oauth_tai.health import Readiness, with_operations
from oauth_tai.settings import Settings
from oauth_tai.system import build_system
from tests.conftest import (
    free_port,
    server_env,
    start_server,
    stop_server,
)
from tests.oauth_client import loopback_session
from tests.operations.conftest import Process, start_gateway

OK = {"status": "ok"}
UNAVAILABLE = {"status": "unavailable"}


def _behind_nothing(environ: object, start_response: object) -> list[bytes]:
    raise AssertionError("the operations endpoints must not reach the app")


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[object]:
    engine = create_engine(f"sqlite:///{tmp_path / 'ready.db'}")
    yield engine
    engine.dispose()


def test_ready_when_database_and_redis_answer(
    sqlite_engine: object, redis_url: str
) -> None:
    app = webtest.TestApp(
        with_operations(_behind_nothing, Settings(redis_url=redis_url), sqlite_engine)
    )

    for path in ("/healthz", "/readyz"):
        answer = app.get(path)
        assert answer.json == OK
        assert answer.headers["Cache-Control"] == "no-store"


def test_not_ready_when_the_database_does_not_answer(
    tmp_path: Path, redis_url: str
) -> None:
    """503 with nothing but the status; /healthz stays 200 all the while."""
    # No directory, no file.
    engine = create_engine(f"sqlite:///{tmp_path / 'missing/ready.db'}")
    try:
        app = webtest.TestApp(
            with_operations(_behind_nothing, Settings(redis_url=redis_url), engine)
        )
        refused = app.get("/readyz", status=503)
        alive = app.get("/healthz")
    finally:
        engine.dispose()

    assert json.loads(refused.body) == UNAVAILABLE
    assert refused.body == b'{"status": "unavailable"}'
    assert alive.json == OK


def test_ready_while_redis_does_not_answer(sqlite_engine: object) -> None:
    """Requests do without Redis, so the load balancer keeps the instance."""
    # Nothing listens on a port just found free.
    dead = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = webtest.TestApp(with_operations(_behind_nothing, dead, sqlite_engine))

    assert app.get("/readyz").json == OK


def test_readiness_is_probed_at_most_once_a_period() -> None:
    """A flood of /readyz costs one probe a period, not one per request."""
    calls: list[int] = []
    now = [100.0]
    readiness = Readiness([("counted", lambda: calls.append(1))], clock=lambda: now[0])

    for _ in range(50):
        assert readiness.ready()
    assert len(calls) == 1

    now[0] += 1.0
    assert readiness.ready()
    assert len(calls) == 2


def test_other_paths_reach_the_app_and_metrics_can_be_disabled(
    settings: Settings,
) -> None:
    system = build_system(settings.with_values(metrics_enabled=False))
    app = webtest.TestApp(system.app)

    assert app.get("/healthz").json == OK
    assert app.get("/readyz").json == OK
    # Not ours any more: the provider answers it, with its own 404.
    assert app.get("/metrics", status=404).json == {"error": "not_found"}
    system.provider.engine.dispose()


def test_serve_answers_without_a_token_and_metrics_on_their_own_port(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    metrics_port = free_port()
    server = start_server(
        tmp_path / "var",
        OAUTH_TAI_REDIS_URL=redis_url,
        OAUTH_TAI_REDIS_PREFIX=redis_prefix,
        OAUTH_TAI_METRICS_PORT=str(metrics_port),
    )
    http = loopback_session()
    try:
        health = http.get(server.base + "/healthz", timeout=30)
        ready = http.get(server.base + "/readyz", timeout=30)
        on_main_port = http.get(server.base + "/metrics", timeout=30)
        metrics = http.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
    finally:
        stop_server(server)

    assert (health.status_code, health.json()) == (200, OK)
    assert (ready.status_code, ready.json()) == (200, OK)
    assert on_main_port.status_code == 404
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert "oauth_tai_decisions_total" in metrics.text


def test_gateway_answers_health_readiness_and_metrics(
    tmp_path: Path, processes: list[Process]
) -> None:
    env = server_env(tmp_path / "var")
    gateway = start_gateway(env, tmp_path / "gateway.log", "--prefix", "/api/")
    processes.append(gateway)
    http = loopback_session()

    assert http.get(gateway.base + "/healthz", timeout=30).json() == OK
    assert http.get(gateway.base + "/readyz", timeout=30).json() == OK
    metrics = http.get(gateway.base + "/metrics", timeout=30)
    assert metrics.status_code == 200
    assert "oauth_tai_provider_call_seconds" in metrics.text


def test_serve_and_gateway_stay_ready_while_redis_does_not_answer(
    tmp_path: Path, processes: list[Process]
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = start_server(tmp_path / "var", OAUTH_TAI_REDIS_URL=dead)
    env = server_env(tmp_path / "var", OAUTH_TAI_REDIS_URL=dead)
    gateway = start_gateway(env, tmp_path / "gateway.log", "--prefix", "/api/")
    processes.append(gateway)
    http = loopback_session()
    try:
        provider_ready = http.get(server.base + "/readyz", timeout=30)
        gateway_ready = http.get(gateway.base + "/readyz", timeout=30)
    finally:
        stop_server(server)

    assert (provider_ready.status_code, provider_ready.json()) == (200, OK)
    assert (gateway_ready.status_code, gateway_ready.json()) == (200, OK)
