"""Health, readiness and metrics endpoints, in front of any oauth-tai app.

``GET /healthz`` answers 200 while the process can answer at all: a
liveness probe that restarts a process which stopped answering.
``GET /readyz`` answers 200 when the database answers, and 503 when it
does not: a readiness probe that takes an instance out of the load
balancer until it is back. Redis does not count: without it requests are
answered from each process's own cache and the provider, so an outage
costs speed, not service, and taking every instance out for it would
turn it into one. The cache logs a Redis outage when it starts and ends,
and counts each failed command (``oauth_tai_redis_errors_total``).
``GET /metrics`` is the Prometheus endpoint, when served on this port.

All three are unauthenticated, so they say nothing an attacker could use:
``{"status": "ok"}`` or ``{"status": "unavailable"}``, never which part
failed or why. That goes to the log, once per change. A flood of
``/readyz`` costs the database at most one query a second, as an answer
is kept for :data:`READINESS_CACHE_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

from sqlalchemy import Engine, text

from oauth_tai.metrics import metrics_app
from oauth_tai.settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"

# Probes come every few seconds; one answer a second is fresh enough for
# them and bounds what an unauthenticated flood can cost.
READINESS_CACHE_SECONDS: Final = 1.0

Probe = Callable[[], object]


def database_probe(engine: Engine) -> Probe:
    """Return a probe that runs ``SELECT 1`` on a pooled connection."""

    def probe() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    return probe


class Readiness:
    """Tell whether every dependency answers; remember it for a second.

    :param probes: named checks, each raising when its dependency does not
        answer.
    :param cache_seconds: how long an answer is reused.
    """

    def __init__(
        self,
        probes: Sequence[tuple[str, Probe]],
        *,
        cache_seconds: float = READINESS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probes = tuple(probes)
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._ready = False
        self._failing: frozenset[str] = frozenset()

    def ready(self) -> bool:
        """Return whether every probe passed, probing at most once a period."""
        # Held across the probes on purpose: concurrent probes wait for one
        # answer instead of each querying the database.
        with self._lock:
            now = self._clock()
            fresh = (
                self._checked_at is not None
                and now - self._checked_at < self.cache_seconds
            )
            if not fresh:
                self._ready = self._probe_all()
                self._checked_at = now
            return self._ready

    def _probe_all(self) -> bool:
        failing = set()
        for name, probe in self.probes:
            try:
                probe()
            except Exception as exc:
                failing.add(name)
                if name not in self._failing:
                    logger.warning("not ready: %s does not answer: %s", name, exc)

        for name in self._failing - failing:
            logger.warning("ready again: %s answers", name)

        self._failing = frozenset(failing)
        return not failing


def with_operations(
    app: WSGIApplication, settings: Settings, engine: Engine | None
) -> OperationsApp:
    """Put the operations endpoints in front of ``app``, as the settings say.

    :param engine: the database ``/readyz`` checks, if this process has one.
    """
    probes: list[tuple[str, Probe]] = []
    if engine is not None:
        probes.append(("the database", database_probe(engine)))

    on_main_port = settings.metrics_enabled and not settings.metrics_port
    return OperationsApp(
        app, Readiness(probes), metrics_app() if on_main_port else None
    )


class OperationsApp:
    """Answer the operations endpoints; pass every other request to ``app``.

    Only these exact paths are taken, for any method; a gateway in front
    of an upstream thus answers them itself rather than forwarding them.

    :param app: the application for every other path.
    :param readiness: what ``/readyz`` asks.
    :param metrics: the Prometheus app for ``/metrics``, or ``None`` to
        leave that path to ``app``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        readiness: Readiness,
        metrics: WSGIApplication | None = None,
    ) -> None:
        self.app = app
        self.readiness = readiness
        self.metrics = metrics

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH:
            return _status(start_response, ok=True)

        if path == READY_PATH:
            return _status(start_response, ok=self.readiness.ready())

        if path == METRICS_PATH and self.metrics is not None:
            return self.metrics(environ, start_response)

        return self.app(environ, start_response)


_OK: Final = json.dumps({"status": "ok"}).encode()
_UNAVAILABLE: Final = json.dumps({"status": "unavailable"}).encode()


def _status(start_response: StartResponse, *, ok: bool) -> list[bytes]:
    body = _OK if ok else _UNAVAILABLE
    start_response(
        "200 OK" if ok else "503 Service Unavailable",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]
