"""The trust association middleware in front of a WSGI app, on a real store."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from webob import Request
from webtest import TestApp

from oauth_tai.cache import Miss, TokenCache
from oauth_tai.errors import ProviderUnavailable
from oauth_tai.identity import ENVIRON_KEY, Identity, get_identity
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.provider.store import TokenStore
from oauth_tai.system import Provider
from oauth_tai.validators import TokenValidator

REALM = "Connections API"
CLIENT_ID = "notes-app"
CLIENT_NAME = "Notes App"
USER = "alice"


class Clock:
    """A clock the test moves by hand, shared by a store and a cache."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class EchoApp:
    """A WSGI app that answers with what the middleware told it, as JSON."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        identity = get_identity(environ)
        seen: dict[str, Any] = {
            "REMOTE_USER": environ.get("REMOTE_USER"),
            "AUTH_TYPE": environ.get("AUTH_TYPE"),
            "has_identity_key": ENVIRON_KEY in environ,
            "identity": None,
        }
        if identity is not None:
            seen["identity"] = {
                "user": identity.user,
                "consumer_id": identity.consumer_id,
                "consumer_name": identity.consumer_name,
                "scopes": sorted(identity.scopes),
                "expires_at": identity.expires_at,
                "token_hash": identity.token_hash,
            }
        self.calls.append(seen)
        body = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


@dataclass
class Deployment:
    """A middleware over the real token store, as ``build_app`` wires it."""

    provider: Provider
    store: TokenStore
    cache: TokenCache
    echo: EchoApp
    web: TestApp
    grant_id: int

    def issue(self, expires_in: int = 3600) -> str:
        token = secrets.token_urlsafe(32)
        self.store.issue(self.grant_id, token, None, expires_in)
        return token


def wire(
    provider: Provider,
    store: TokenStore,
    cache: TokenCache,
    validator: TokenValidator | None = None,
) -> tuple[EchoApp, TestApp]:
    def evict(digests: list[bytes]) -> None:
        for digest in digests:
            cache.evict(cache.key_for_digest(digest))

    store.on_revoke = evict
    echo = EchoApp()
    middleware = TrustAssociationMiddleware(
        echo,
        validator if validator is not None else store,
        cache,
        realm=REALM,
        prefixes=("/api/",),
    )
    return echo, TestApp(middleware)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def deployment(provider: Provider, clock: Clock) -> Deployment:
    provider.registry.add(CLIENT_ID, CLIENT_NAME, "http://127.0.0.1:9/cb")
    provider.users.add(USER, "alice-password")
    store = TokenStore(provider.engine, provider.store.lifetimes, clock=clock)
    grant_id = store.consent(USER, CLIENT_ID, "connections")
    cache = TokenCache(b"middleware-test-secret", clock=clock)
    echo, web = wire(provider, store, cache)
    return Deployment(provider, store, cache, echo, web, grant_id)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge_params(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split(", "):
        name, _, value = part.partition("=")
        params[name] = json.loads(value)
    return params


def test_good_token_reaches_the_app_with_the_identity(
    deployment: Deployment, clock: Clock
) -> None:
    """A live token gives the app the user, Bearer and the verified identity."""
    token = deployment.issue(expires_in=3600)

    response = deployment.web.get("/api/me", headers=bearer(token), status=200)

    seen = response.json
    assert seen["REMOTE_USER"] == USER
    assert seen["AUTH_TYPE"] == "Bearer"
    identity = seen["identity"]
    assert identity["user"] == USER
    assert identity["consumer_id"] == CLIENT_ID
    assert identity["consumer_name"] == CLIENT_NAME
    assert identity["scopes"] == ["connections"]
    assert identity["expires_at"] == int(clock.now) + 3600
    assert len(deployment.echo.calls) == 1


def test_identity_carries_a_short_keyed_hash_not_the_token(
    deployment: Deployment,
) -> None:
    """The token hash is short, keyed, and neither holds nor is the token."""
    token = deployment.issue()

    response = deployment.web.get("/api/me", headers=bearer(token), status=200)

    token_hash = response.json["identity"]["token_hash"]
    assert 8 <= len(token_hash) < len(token)
    assert token_hash not in token and token not in token_hash
    assert token_hash != hashlib.sha256(token.encode()).hexdigest()[: len(token_hash)]
    assert deployment.cache.key(token).startswith(token_hash)
    assert token not in response.text


def test_no_token_is_challenged_without_an_error_code(
    deployment: Deployment,
) -> None:
    """RFC 6750 §3.1: no credentials gives 401 with the realm and no error."""
    response = deployment.web.get("/api/me", status=401)

    assert challenge_params(response.headers["WWW-Authenticate"]) == {"realm": REALM}
    assert response.headers["Cache-Control"] == "no-store"
    assert deployment.echo.calls == []


def test_another_scheme_is_treated_as_no_token(deployment: Deployment) -> None:
    """Basic credentials are not a bearer token: 401 with no error code."""
    response = deployment.web.get(
        "/api/me", headers={"Authorization": "Basic YWxpY2U6cHc="}, status=401
    )

    assert challenge_params(response.headers["WWW-Authenticate"]) == {"realm": REALM}
    assert deployment.echo.calls == []


def test_unknown_token_is_refused_as_invalid(deployment: Deployment) -> None:
    """A token the provider never issued gets 401 invalid_token."""
    response = deployment.web.get(
        "/api/me", headers=bearer(secrets.token_urlsafe(32)), status=401
    )

    params = challenge_params(response.headers["WWW-Authenticate"])
    assert params["realm"] == REALM
    assert params["error"] == "invalid_token"
    assert response.json["error"] == "invalid_token"
    assert deployment.echo.calls == []


def test_expired_token_is_refused_even_after_it_was_cached(
    deployment: Deployment, clock: Clock
) -> None:
    """Once its expiry passes, a token cached as good is refused."""
    token = deployment.issue(expires_in=60)
    deployment.web.get("/api/me", headers=bearer(token), status=200)

    clock.now += 60
    response = deployment.web.get("/api/me", headers=bearer(token), status=401)

    params = challenge_params(response.headers["WWW-Authenticate"])
    assert params["error"] == "invalid_token"
    assert len(deployment.echo.calls) == 1


def test_token_issued_already_expired_is_refused(
    deployment: Deployment, clock: Clock
) -> None:
    """A token whose expiry passed before its first use is never accepted."""
    token = deployment.issue(expires_in=5)
    clock.now += 6

    deployment.web.get("/api/me", headers=bearer(token), status=401)

    assert deployment.echo.calls == []


class SkewedProvider:
    """Says a token is active, with an expiry already past."""

    def introspect(self, token: str) -> Mapping[str, Any] | None:
        return {
            "active": True,
            "username": USER,
            "client_id": CLIENT_ID,
            "scope": "connections",
            "exp": int(time.time()) - 30,
        }


def test_an_active_answer_already_expired_is_refused(
    deployment: Deployment,
) -> None:
    """A provider whose clock is behind ours cannot make us accept a token."""
    echo, web = wire(
        deployment.provider, deployment.store, deployment.cache, SkewedProvider()
    )

    for _ in range(2):
        web.get("/api/me", headers=bearer("skewed-token"), status=401)

    assert echo.calls == []
    cached = deployment.cache.get(deployment.cache.key("skewed-token"))
    assert cached is None


def test_revoked_token_is_refused_after_it_was_cached(
    deployment: Deployment,
) -> None:
    """Revocation at the store evicts the cached answer: the next use is 401."""
    token = deployment.issue()
    deployment.web.get("/api/me", headers=bearer(token), status=200)
    assert isinstance(deployment.cache.get(deployment.cache.key(token)), Identity)

    deployment.store.revoke_token(token, CLIENT_ID)
    response = deployment.web.get("/api/me", headers=bearer(token), status=401)

    assert challenge_params(response.headers["WWW-Authenticate"])["error"] == (
        "invalid_token"
    )
    assert len(deployment.echo.calls) == 1


def test_revoked_grant_ends_its_cached_tokens(deployment: Deployment) -> None:
    """Revoking the user's grant refuses every cached token it holds."""
    first, second = deployment.issue(), deployment.issue()
    for token in (first, second):
        deployment.web.get("/api/me", headers=bearer(token), status=200)

    deployment.store.revoke_consumer_for_user(USER, CLIENT_ID)

    for token in (first, second):
        deployment.web.get("/api/me", headers=bearer(token), status=401)
    assert len(deployment.echo.calls) == 2


def test_client_remote_user_is_replaced(deployment: Deployment) -> None:
    """A REMOTE_USER and AUTH_TYPE already in the environ are overwritten."""
    token = deployment.issue()

    response = deployment.web.get(
        "/api/me",
        headers=bearer(token),
        extra_environ={"REMOTE_USER": "mallory", "AUTH_TYPE": "Basic"},
        status=200,
    )

    assert response.json["REMOTE_USER"] == USER
    assert response.json["AUTH_TYPE"] == "Bearer"


def test_client_remote_user_never_reaches_the_app_on_refusal(
    deployment: Deployment,
) -> None:
    """A request claiming REMOTE_USER without a valid token is refused."""
    deployment.web.get(
        "/api/me",
        headers=bearer(secrets.token_urlsafe(32)),
        extra_environ={"REMOTE_USER": "mallory"},
        status=401,
    )
    deployment.web.get("/api/me", extra_environ={"REMOTE_USER": "mallory"}, status=401)

    assert deployment.echo.calls == []


class UserlessValidator:
    """A provider that vouches for a consumer acting on no user's behalf."""

    def introspect(self, token: str) -> Mapping[str, Any] | None:
        return {"active": True, "client_id": CLIENT_ID, "exp": int(time.time()) + 60}


def test_client_remote_user_is_removed_when_the_token_has_no_user(
    provider: Provider,
) -> None:
    """With no user behind the token, a preset REMOTE_USER is dropped."""
    cache = TokenCache(b"userless")
    echo, web = wire(provider, provider.store, cache, UserlessValidator())

    response = web.get(
        "/api/me",
        headers=bearer("client-only-token"),
        extra_environ={"REMOTE_USER": "mallory"},
        status=200,
    )

    assert response.json["REMOTE_USER"] is None
    assert response.json["AUTH_TYPE"] == "Bearer"
    assert response.json["identity"]["consumer_id"] == CLIENT_ID


def test_paths_outside_the_prefixes_pass_through(deployment: Deployment) -> None:
    """Other paths reach the app untouched, with no identity even if planted."""
    token = deployment.issue()
    planted = Identity(USER, CLIENT_ID, CLIENT_NAME, frozenset(), 2**31, "x")

    response = deployment.web.get(
        "/public/page",
        headers=bearer(token),
        extra_environ={ENVIRON_KEY: planted, "REMOTE_USER": "upstream-sso"},
        status=200,
    )

    assert response.json["has_identity_key"] is False
    assert response.json["identity"] is None
    assert response.json["AUTH_TYPE"] is None
    assert response.json["REMOTE_USER"] == "upstream-sso"
    assert isinstance(deployment.cache.get(deployment.cache.key(token)), Miss)


def test_a_path_that_only_resembles_a_prefix_is_not_intercepted(
    deployment: Deployment,
) -> None:
    """Interception is by prefix: ``/apix`` is outside ``/api/``."""
    response = deployment.web.get("/apix", status=200)

    assert response.json["identity"] is None


@pytest.mark.parametrize(
    "value", ["Bearer a b", "Bearer ", "Bearer abc,def", "bearer tok\x01en"]
)
def test_malformed_header_is_a_bad_request(deployment: Deployment, value: str) -> None:
    """A Bearer header that is not one token68 gets 400 invalid_request."""
    response = deployment.web.get(
        "/api/me", headers={"Authorization": value}, status=400
    )

    params = challenge_params(response.headers["WWW-Authenticate"])
    assert params["error"] == "invalid_request"
    assert response.json["error"] == "invalid_request"
    assert deployment.echo.calls == []


@pytest.mark.parametrize("credential", ["\ud800", "tok\udcffen", "t\u20acken"])
def test_a_header_no_server_could_send_is_refused(
    deployment: Deployment, credential: str
) -> None:
    """A caller in the process may break WSGI's latin-1 rule; still no 500."""
    environ = Request.blank("/api/me").environ
    environ["HTTP_AUTHORIZATION"] = "Bearer " + credential
    statuses: list[str] = []

    body = b"".join(
        deployment.web.app(environ, lambda status, headers: statuses.append(status))
    )

    assert statuses == ["400 Bad Request"]
    assert json.loads(body)["error"] == "invalid_request"
    assert deployment.echo.calls == []


class Outage:
    """The real store behind a switch that makes the provider unreachable."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.down = True

    def introspect(self, token: str) -> Mapping[str, Any] | None:
        if self.down:
            raise ProviderUnavailable("connection refused")
        return self.store.introspect(token)


def test_provider_unavailable_gives_503_with_retry_after(
    deployment: Deployment,
) -> None:
    """No answer from the provider is 503 + Retry-After, never a challenge."""
    outage = Outage(deployment.store)
    echo, web = wire(deployment.provider, deployment.store, deployment.cache, outage)
    token = deployment.issue()

    response = web.get("/api/me", headers=bearer(token), status=503)

    assert int(response.headers["Retry-After"]) > 0
    assert "WWW-Authenticate" not in response.headers
    assert response.json["error"] == "temporarily_unavailable"
    assert echo.calls == []


def test_outage_is_not_cached_as_an_answer(deployment: Deployment) -> None:
    """After an outage ends, the same token is accepted at once."""
    outage = Outage(deployment.store)
    echo, web = wire(deployment.provider, deployment.store, deployment.cache, outage)
    token = deployment.issue()
    web.get("/api/me", headers=bearer(token), status=503)

    outage.down = False
    web.get("/api/me", headers=bearer(token), status=200)

    assert len(echo.calls) == 1


def test_cached_answer_survives_an_outage(deployment: Deployment) -> None:
    """A token verified before the provider went away is still served."""
    outage = Outage(deployment.store)
    outage.down = False
    echo, web = wire(deployment.provider, deployment.store, deployment.cache, outage)
    token = deployment.issue()
    web.get("/api/me", headers=bearer(token), status=200)

    outage.down = True
    response = web.get("/api/me", headers=bearer(token), status=200)

    assert response.json["REMOTE_USER"] == USER
