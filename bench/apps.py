"""The WSGI apps the throughput benchmark serves under gunicorn.

gunicorn calls a factory in each worker after the fork, so every worker
builds its own middleware and cache, as ``oauth-tai serve --workers`` does.
Both apps answer with the same small body; the protected one first checks
the bearer token through the middleware, with the bench's Redis as L2.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from cachetools import TTLCache

from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.settings import Settings
from oauth_tai.system import build_cache

BODY = b'{"ok": true}'

# Where a timed app answers with its totals instead of calling the app.
STATS_PATH = "/bench-stats"


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The downstream app: a fixed small JSON answer."""
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]


class FixedProvider:
    """Vouch for the one token the benchmark uses.

    It is asked once per section: every other worker finds the answer in
    the shared Redis (L2) while it warms up.
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def introspect(self, token: str) -> Mapping[str, Any] | None:
        if token != self.token:
            return None
        return {
            "active": True,
            "client_id": "bench-app",
            "client_name": "Bench App",
            "username": "bench-user",
            "scope": "connections",
            "exp": 2**31 - 1,
        }


def make_bare() -> Any:
    return hello


def make_protected() -> Any:
    settings = Settings(
        secret_key=os.environ["BENCH_SECRET"],
        redis_url=os.environ["BENCH_REDIS_URL"],
        redis_prefix=os.environ["BENCH_REDIS_PREFIX"],
    )
    provider = FixedProvider(os.environ["BENCH_TOKEN"])
    return TrustAssociationMiddleware(hello, provider, build_cache(settings))


class Timed:
    """Time every call of ``app`` in this worker; tell the totals at STATS_PATH."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0
        self.nanoseconds = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == STATS_PATH:
            body = json.dumps({"calls": self.calls, "ns": self.nanoseconds}).encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]

        started = time.perf_counter_ns()
        result: Iterable[bytes] = self.app(environ, start_response)
        self.nanoseconds += time.perf_counter_ns() - started
        self.calls += 1
        return result


def make_floor() -> Any:
    """The least a cached lookup can do: SHA-256 of the token, a TTLCache get."""
    token = os.environ["BENCH_TOKEN"]
    cache: TTLCache[bytes, str] = TTLCache(maxsize=100_000, ttl=300)
    cache[hashlib.sha256(token.encode()).digest()] = "bench-user"

    def floor(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header[:7].lower() == "bearer ":
            user = cache.get(hashlib.sha256(header[7:].encode()).digest())
            if user is not None:
                environ["REMOTE_USER"] = user
                return hello(environ, start_response)
        start_response("401 Unauthorized", [("Content-Length", "0")])
        return [b""]

    return floor


def make_timed_bare() -> Any:
    return Timed(make_bare())


def make_timed_protected() -> Any:
    return Timed(make_protected())
