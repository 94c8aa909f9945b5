"""Prometheus metrics: what each part counts, and how they are served.

Every metric of oauth-tai is defined here, so the names are in one place
and follow Prometheus conventions: a ``oauth_tai_`` prefix, ``_total`` on
counters, ``_seconds`` on durations. Labels take values from small fixed
sets only (an outcome, a reason, a tier); a user, a consumer or a token
is never a label, as each would make a new time series.

``serve`` and ``gateway`` answer ``GET /metrics`` on their own port, or
on a port of its own when ``metrics_port`` is set, or not at all when
``metrics_enabled`` is false.

Several worker processes (gunicorn) each count for themselves. Set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory the workers may write
to before the first of them starts: each process then keeps its values in
files there, and :func:`metrics_app` adds up every process's files, so
any worker answers for all. The gunicorn configurations in ``deploy/``
do this and tell prometheus_client when a worker exits.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
    multiprocess,
    start_http_server,
)

from oauth_tai.settings import Settings
from oauth_tai.tally import FlushFirst, Tally

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger(__name__)

MULTIPROCESS_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"

# Ahead of every counter below, so each collection sees the counts the
# request path keeps in tallies (see oauth_tai.tally).
REGISTRY.register(FlushFirst())

# -- the middleware's decisions ------------------------------------------------

DECISIONS: Final = Counter(
    "oauth_tai_decisions_total",
    "Requests judged by the middleware or the gateway, by outcome and reason.",
    ["outcome", "reason"],
)

# The outcomes, and the reasons each comes with.
ALLOWED: Final = "allowed"  # reason: "token"
PASSED: Final = "passed"  # reasons: "not_intercepted", "no_token"
REFUSED: Final = "refused"  # reasons below
REFUSAL_REASONS: Final = (
    "missing_token",  # 401 without an error code
    "invalid_token",  # 401: unknown, revoked, expired or malformed
    "insufficient_scope",  # 403
    "invalid_request",  # 400
    "provider_unavailable",  # 503
)

# -- the cache tiers -----------------------------------------------------------

CACHE_ANSWERS: Final = Counter(
    "oauth_tai_cache_answers_total",
    "Answers about a token, by the tier that gave them: l1, l2 or provider.",
    ["tier"],
)
CACHE_NEGATIVE_HITS: Final = Counter(
    "oauth_tai_cache_negative_hits_total",
    "Cache answers that a token is not active, given without the provider.",
)
SINGLEFLIGHT_WAITS: Final = Counter(
    "oauth_tai_singleflight_waits_total",
    "Requests that waited for another request's call to the provider.",
)

# -- the provider, Redis and the circuit breaker ------------------------------

# From a fast local network (a few ms) to the default timeout (2 s).
PROVIDER_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

PROVIDER_CALL_SECONDS: Final = Histogram(
    "oauth_tai_provider_call_seconds",
    "Time spent on calls to a remote provider, by endpoint.",
    ["endpoint"],
    buckets=PROVIDER_BUCKETS,
)
PROVIDER_ERRORS: Final = Counter(
    "oauth_tai_provider_errors_total",
    "Calls to a remote provider that gave no usable answer, by endpoint.",
    ["endpoint"],
)
REDIS_ERRORS: Final = Counter(
    "oauth_tai_redis_errors_total",
    "Redis commands that failed; each one fell back to L1 and the provider.",
)
CIRCUIT_STATE: Final = Gauge(
    "oauth_tai_circuit_state",
    "The provider circuit breaker: 0 closed, 1 half-open, 2 open.",
    # Under several workers: the worst state among the live ones.
    multiprocess_mode="livemax",
)

# -- revocations ---------------------------------------------------------------

REVOCATIONS_SENT: Final = Counter(
    "oauth_tai_revocations_sent_total",
    "Access tokens this process revoked and announced to the caches.",
)
REVOCATIONS_RECEIVED: Final = Counter(
    "oauth_tai_revocations_received_total",
    "Revoked access tokens this process learned of and evicted, by channel.",
    ["channel"],
)

# Label children used on every request are bound once, not looked up each
# time.
INTROSPECTION_SECONDS: Final = PROVIDER_CALL_SECONDS.labels(endpoint="introspection")
INTROSPECTION_ERRORS: Final = PROVIDER_ERRORS.labels(endpoint="introspection")
JWKS_SECONDS: Final = PROVIDER_CALL_SECONDS.labels(endpoint="jwks")
JWKS_ERRORS: Final = PROVIDER_ERRORS.labels(endpoint="jwks")
FEED_RECEIVED: Final = REVOCATIONS_RECEIVED.labels(channel="feed")

# Counted on every request: tallies, not counters (see oauth_tai.tally).
INVALID_REQUESTS: Final = Tally(
    DECISIONS.labels(outcome=REFUSED, reason="invalid_request")
)
ALLOWED_BY_TOKEN: Final = Tally(DECISIONS.labels(outcome=ALLOWED, reason="token"))
PASSED_UNINTERCEPTED: Final = Tally(
    DECISIONS.labels(outcome=PASSED, reason="not_intercepted")
)
PASSED_WITHOUT_TOKEN: Final = Tally(DECISIONS.labels(outcome=PASSED, reason="no_token"))
# Keyed by the refusal's RFC 6750 error code; no code means no token sent.
REFUSED_BY_ERROR: Final = {
    None: Tally(DECISIONS.labels(outcome=REFUSED, reason="missing_token")),
    "invalid_token": Tally(DECISIONS.labels(outcome=REFUSED, reason="invalid_token")),
    "insufficient_scope": Tally(
        DECISIONS.labels(outcome=REFUSED, reason="insufficient_scope")
    ),
    "invalid_request": INVALID_REQUESTS,
    "temporarily_unavailable": Tally(
        DECISIONS.labels(outcome=REFUSED, reason="provider_unavailable")
    ),
}
L1_ANSWERS: Final = Tally(CACHE_ANSWERS.labels(tier="l1"))
L2_ANSWERS: Final = Tally(CACHE_ANSWERS.labels(tier="l2"))
PROVIDER_ANSWERS: Final = Tally(CACHE_ANSWERS.labels(tier="provider"))
NEGATIVE_HITS: Final = Tally(CACHE_NEGATIVE_HITS)
# The circuit breaker's states as the gauge shows them.
CIRCUIT_VALUES: Final = {"closed": 0, "half-open": 1, "open": 2}


def is_multiprocess() -> bool:
    """Tell whether metrics are kept in files shared by several processes."""
    return bool(os.environ.get(MULTIPROCESS_VARIABLE))


def metrics_registry() -> CollectorRegistry:
    """Return the registry that holds what ``/metrics`` shows.

    In multiprocess mode, a registry that reads every process's files;
    otherwise the process's own.
    """
    if not is_multiprocess():
        return REGISTRY

    registry = CollectorRegistry()
    registry.register(FlushFirst())
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def metrics_app() -> WSGIApplication:
    """Return the WSGI app that answers with the metrics in text format."""
    return make_wsgi_app(metrics_registry())


def start_metrics_listener(settings: Settings) -> int | None:
    """Serve the metrics on their own port if the settings ask for one.

    Returns the port listened on, or ``None`` when the metrics are disabled
    or served on the main port. The listener runs in a daemon thread.
    """
    if not settings.metrics_enabled or not settings.metrics_port:
        return None

    server, _thread = start_http_server(
        settings.metrics_port, addr=settings.metrics_host, registry=metrics_registry()
    )
    port = int(server.server_port)
    logger.info("metrics at http://%s:%d/metrics", settings.metrics_host, port)
    return port


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (gunicorn's ``child_exit`` hook)."""
    if is_multiprocess():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
