"""The provider stops: known tokens ride it out, new ones get 503, it is left alone.

The provider is ``oauth-tai serve`` in a process of its own, asked over
RFC 7662 introspection; the test stops it and starts it again on the same
port. The cache's clock and the breaker's are moved by hand, so what is
fresh, stale or over, and when the breaker probes, does not depend on how
fast this machine is.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from webtest import TestApp

from oauth_tai.breaker import CircuitBreaker
from oauth_tai.system import Provider, open_provider
from oauth_tai.validators.introspection import IntrospectionClient
from tests.cache.conftest import (
    CLIENT_ID,
    CLIENT_NAME,
    USER,
    Clock,
    CountingValidator,
    Spawn,
    bearer,
    start_provider,
)
from tests.conftest import LiveServer, database_env, free_port, stop_server

INTROSPECT = "/oauth2/endpoint/connectionsProvider/introspect"
TTL, MAX_STALE = 60, 120
FAILURES, COOLDOWN = 3, 30


@dataclass
class RemoteProvider:
    """A provider process that a test may stop and start again."""

    var_dir: Path
    port: int
    env: dict[str, str]
    server: LiveServer | None
    provider: Provider
    client_secret: str
    grant_id: int

    def stop(self) -> None:
        assert self.server is not None
        stop_server(self.server)
        self.server = None

    def start(self) -> None:
        self.server = start_provider(self.var_dir, self.port, **self.env)

    def issue(self, expires_in: int = 3600) -> str:
        token = secrets.token_urlsafe(32)
        self.provider.store.issue(self.grant_id, token, None, expires_in)
        return token

    def client(self) -> IntrospectionClient:
        url = f"http://127.0.0.1:{self.port}{INTROSPECT}"
        return IntrospectionClient(url, CLIENT_ID, self.client_secret, timeout=5.0)


@pytest.fixture
def remote(tmp_path: Path, database_url: str) -> Iterator[RemoteProvider]:
    var_dir, port, env = tmp_path / "provider", free_port(), database_env(database_url)
    server = start_provider(var_dir, port, **env)
    added = server.cli(
        "clients",
        "add",
        CLIENT_ID,
        "--name",
        CLIENT_NAME,
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    provider = open_provider(server.settings())
    provider.users.add(USER, "alice-password")
    grant_id = provider.store.consent(USER, CLIENT_ID, "connections")
    remote = RemoteProvider(
        var_dir,
        port,
        env,
        server,
        provider,
        json.loads(added.stdout)["client_secret"],
        grant_id,
    )
    yield remote
    if remote.server is not None:
        remote.stop()
    provider.engine.dispose()


def answers(web: TestApp, tokens: dict[str, str], rounds: int) -> Counter[str]:
    """Send each token ``rounds`` times; count answers as ``name status``."""
    counted: Counter[str] = Counter()
    for _ in range(rounds):
        for name, token in tokens.items():
            response = web.get("/", headers=bearer(token), expect_errors=True)
            counted[f"{name} {response.status_int}"] += 1
            if response.status_int == 503:
                assert 1 <= int(response.headers["Retry-After"]) <= COOLDOWN
                assert "WWW-Authenticate" not in response.headers
    return counted


def test_a_provider_outage_is_ridden_out_and_ends_by_itself(
    remote: RemoteProvider, spawn: Spawn
) -> None:
    clock, monotonic = Clock(), Clock(start=0.0)
    counting = CountingValidator(remote.client())
    breaker = CircuitBreaker(FAILURES, COOLDOWN, clock=monotonic)
    web = spawn(
        counting, ttl=TTL, max_stale=MAX_STALE, clock=clock, breaker=breaker
    ).web
    known, short = remote.issue(), remote.issue(expires_in=TTL + 30)
    new = remote.issue()

    assert answers(web, {"known": known, "short": short}, 1) == {
        "known 200": 1,
        "short 200": 1,
    }
    assert counting.calls == 2

    remote.stop()

    # Fresh in L1: the provider is not even asked.
    assert answers(web, {"known": known}, 5) == {"known 200": 5}
    assert counting.calls == 2

    # Past the TTL: asked, it fails, the stale answers stand; the new token
    # cannot be answered. The third failure in a row opens the breaker.
    clock.advance(TTL + 1)
    assert answers(web, {"known": known, "short": short, "new": new}, 1) == {
        "known 200": 1,
        "short 200": 1,
        "new 503": 1,
    }
    assert counting.calls == 2 + FAILURES
    assert breaker.state == "open"

    # Open: nobody calls the provider any more.
    assert answers(web, {"known": known, "short": short, "new": new}, 10) == {
        "known 200": 10,
        "short 200": 10,
        "new 503": 10,
    }
    assert counting.calls == 2 + FAILURES

    # Never past the token's own expiry, however long max_stale is.
    clock.advance(30)
    assert answers(web, {"known": known, "short": short}, 3) == {
        "known 200": 3,
        "short 503": 3,
    }

    # Nor past max_stale.
    clock.advance(MAX_STALE)
    assert answers(web, {"known": known}, 3) == {"known 503": 3}
    assert counting.calls == 2 + FAILURES

    # The provider is back, but the breaker waits out its cool-down...
    remote.start()
    assert answers(web, {"new": new}, 3) == {"new 503": 3}
    assert counting.calls == 2 + FAILURES

    # ...then one request probes, and everything is asked again.
    monotonic.advance(COOLDOWN)
    assert answers(web, {"new": new, "known": known}, 3) == {
        "new 200": 3,
        "known 200": 3,
    }
    assert counting.calls == 2 + FAILURES + 2
    assert breaker.state == "closed"
    assert breaker.opened == 1


def test_a_failed_probe_opens_the_breaker_again(
    remote: RemoteProvider, spawn: Spawn
) -> None:
    """Half-open, one call goes through; if it fails, the door shuts again."""
    monotonic = Clock(start=0.0)
    counting = CountingValidator(remote.client())
    breaker = CircuitBreaker(FAILURES, COOLDOWN, clock=monotonic)
    web = spawn(counting, breaker=breaker).web
    remote.stop()
    tokens = {"new": remote.issue()}

    assert answers(web, tokens, FAILURES + 5) == {"new 503": FAILURES + 5}
    assert counting.calls == FAILURES

    monotonic.advance(COOLDOWN)
    assert answers(web, tokens, 5) == {"new 503": 5}
    assert counting.calls == FAILURES + 1
    assert breaker.state == "open"
    assert breaker.opened == 1
