"""The RFC 7662 introspection client against a real provider over HTTP."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import requests
from webtest import TestApp

from oauth_tai.cache import TokenCache
from oauth_tai.errors import ProviderUnavailable
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.provider.store import TokenStore
from oauth_tai.system import Provider, open_provider
from oauth_tai.validators.introspection import IntrospectionClient

if TYPE_CHECKING:
    from tests.conftest import LiveServer

ENDPOINT = "/oauth2/endpoint/connectionsProvider"
CLIENT_ID = "notes-app"
CLIENT_NAME = "Notes App"
USER = "alice"


@dataclass
class Remote:
    """A provider in its own process, a consumer on it, and a live token."""

    server: LiveServer
    provider: Provider
    client_secret: str
    grant_id: int
    token: str
    expires_at: int

    def client(self, secret: str | None = None) -> IntrospectionClient:
        return IntrospectionClient(
            self.server.base + ENDPOINT + "/introspect",
            CLIENT_ID,
            self.client_secret if secret is None else secret,
            timeout=5.0,
        )

    def revoke(self, token: str) -> None:
        response = requests.post(
            self.server.base + ENDPOINT + "/revoke",
            data={"token": token},
            auth=(CLIENT_ID, self.client_secret),
            timeout=5,
        )
        assert response.status_code == 200


@pytest.fixture
def remote(live_server: LiveServer) -> Iterator[Remote]:
    added = live_server.cli(
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
    client_secret = json.loads(added.stdout)["client_secret"]

    # The server's own database, opened from here as a second process would.
    provider = open_provider(live_server.settings())
    provider.users.add(USER, "alice-password")
    grant_id = provider.store.consent(USER, CLIENT_ID, "connections")
    token = secrets.token_urlsafe(32)
    issued_at = provider.store.now()
    provider.store.issue(grant_id, token, None, 3600)

    yield Remote(
        live_server, provider, client_secret, grant_id, token, issued_at + 3600
    )
    provider.engine.dispose()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def protect(client: IntrospectionClient) -> TestApp:
    """A middleware over ``client`` with a fresh cache, before a tiny app."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['REMOTE_USER']} {environ['AUTH_TYPE']}".encode()]

    cache = TokenCache(secrets.token_bytes(32))
    return TestApp(TrustAssociationMiddleware(app, client, cache))


def test_active_token_is_answered_with_its_claims(remote: Remote) -> None:
    """A live token's answer names the consumer, the user and the expiry."""
    answer = remote.client().introspect(remote.token)

    assert answer is not None
    assert answer["active"] is True
    assert answer["client_id"] == CLIENT_ID
    assert answer["client_name"] == CLIENT_NAME
    assert answer["username"] == USER
    assert answer["exp"] == remote.expires_at
    assert answer["scope"] == "connections"


def test_unknown_token_is_inactive(remote: Remote) -> None:
    """A token the provider never issued introspects to ``None``."""
    assert remote.client().introspect(secrets.token_urlsafe(32)) is None


def test_expired_token_is_inactive(remote: Remote) -> None:
    """A token past its expiry at the provider introspects to ``None``."""
    an_hour_ago = TokenStore(remote.provider.engine, clock=lambda: time.time() - 3600)
    expired = secrets.token_urlsafe(32)
    an_hour_ago.issue(remote.grant_id, expired, None, 60)

    assert remote.client().introspect(expired) is None


def test_wrong_client_secret_is_an_outage_not_an_answer(remote: Remote) -> None:
    """Refused credentials raise: every token would otherwise look inactive."""
    client = remote.client(secret="not-the-" + remote.client_secret)

    with pytest.raises(ProviderUnavailable) as outage:
        client.introspect(remote.token)
    assert "401" in outage.value.reason

    response = protect(client).get(
        "/", headers={"Authorization": f"Bearer {remote.token}"}, status=503
    )
    assert "Retry-After" in response.headers
    assert "WWW-Authenticate" not in response.headers


def test_a_url_that_is_not_the_endpoint_is_an_outage(remote: Remote) -> None:
    """A 404 from the provider is not an answer about the token."""
    client = IntrospectionClient(
        remote.server.base + ENDPOINT + "/no-such-endpoint",
        CLIENT_ID,
        remote.client_secret,
        timeout=5.0,
    )

    with pytest.raises(ProviderUnavailable):
        client.introspect(remote.token)


def test_nothing_listening_is_an_outage() -> None:
    """A refused connection raises ProviderUnavailable, and the middleware 503s."""
    client = IntrospectionClient(
        f"http://127.0.0.1:{unused_port()}{ENDPOINT}/introspect",
        CLIENT_ID,
        "some-secret",
        timeout=2.0,
    )

    with pytest.raises(ProviderUnavailable):
        client.introspect("some-token")

    response = protect(client).get(
        "/", headers={"Authorization": "Bearer some-token"}, status=503
    )
    assert int(response.headers["Retry-After"]) > 0


def test_middleware_accepts_a_live_token_and_refuses_it_once_revoked(
    remote: Remote,
) -> None:
    """Through introspection the token works until the provider revokes it."""
    headers = {"Authorization": f"Bearer {remote.token}"}
    response = protect(remote.client()).get("/", headers=headers, status=200)
    assert response.text == f"{USER} Bearer"

    remote.revoke(remote.token)

    assert remote.client().introspect(remote.token) is None
    response = protect(remote.client()).get("/", headers=headers, status=401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
