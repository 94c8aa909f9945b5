"""identity_of, require_scopes and require_user on the handlers they guard.

These call the handlers with an identity planted in the environ, as the
middleware would leave it; test_frameworks.py has the middleware in front.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import pytest
from webtest import TestApp
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from oauth_tai.identity import ENVIRON_KEY, Identity
from oauth_tai.integration import identity_of, require_scopes, require_user
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.rules import InterceptPolicy, InterceptRule
from tests.integration.apps import challenge_params

ALICE = Identity(
    user="alice",
    consumer_id="notes-app",
    consumer_name="Notes App",
    scopes=frozenset({"connections", "profile"}),
    expires_at=int(time.time()) + 3600,
    token_hash="abc123",
)
CONSUMER_ONLY = Identity(
    user=None,
    consumer_id="batch-job",
    consumer_name="Batch Job",
    scopes=frozenset({"connections"}),
    expires_at=int(time.time()) + 3600,
    token_hash="def456",
)


def environ_with(identity: Identity | None) -> dict[str, Any]:
    environ = EnvironBuilder("/api/me").get_environ()
    if identity is not None:
        environ[ENVIRON_KEY] = identity
    return environ


def answer(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"answered"]


class StaticValidator:
    """A provider that knows one token and what it stands for."""

    def __init__(self, token: str, answer: dict[str, Any]) -> None:
        self.token, self.answer = token, answer

    def introspect(self, token: str) -> dict[str, Any] | None:
        return self.answer if token == self.token else None


def test_identity_of_reads_an_environ_and_a_request() -> None:
    """The same identity from the environ and from a werkzeug Request on it."""
    environ = environ_with(ALICE)

    assert identity_of(environ) is ALICE
    assert identity_of(Request(environ)) is ALICE


def test_identity_of_is_none_without_a_verified_identity() -> None:
    """Nothing, or something that is not an Identity, gives None."""
    environ = environ_with(None)
    assert identity_of(environ) is None

    environ[ENVIRON_KEY] = {"user": "mallory"}
    assert identity_of(Request(environ)) is None


def test_identity_of_refuses_what_is_not_a_request() -> None:
    """An object with no environ is a programming error, not an anonymous call."""
    with pytest.raises(TypeError):
        identity_of(object())


def test_wsgi_handler_without_identity_gets_401_and_is_not_called() -> None:
    """No identity: 401 with a bare challenge (RFC 6750 §3.1)."""
    calls: list[str] = []

    @require_scopes("connections")
    def handler(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        calls.append("called")
        return answer(environ, start_response)

    response = TestApp(handler).get("/api/me", status=401)

    assert response.headers["WWW-Authenticate"] == 'Bearer realm="oauth-tai"'
    assert response.json == {"error": "unauthorized"}
    assert response.headers["Cache-Control"] == "no-store"
    assert calls == []


def test_wsgi_handler_lacking_a_scope_gets_403_naming_the_scopes() -> None:
    """A missing scope: 403 insufficient_scope with every scope needed."""
    guarded = require_scopes("profile", "admin", realm="Connections API")(answer)

    response = TestApp(guarded).get(
        "/api/me", extra_environ={ENVIRON_KEY: ALICE}, status=403
    )

    assert challenge_params(response.headers["WWW-Authenticate"]) == {
        "realm": "Connections API",
        "error": "insufficient_scope",
        "error_description": "the access token lacks a scope",
        "scope": "admin profile",
    }
    assert response.json["error"] == "insufficient_scope"
    assert int(response.headers["Content-Length"]) == len(response.body)


def test_wsgi_handler_with_the_scopes_is_called() -> None:
    """Every scope present: the handler answers, untouched."""
    guarded = require_scopes("profile", "connections")(answer)

    response = TestApp(guarded).get(
        "/api/me", extra_environ={ENVIRON_KEY: ALICE}, status=200
    )

    assert response.text == "answered"


def test_require_user_refuses_a_consumer_acting_alone() -> None:
    """A consumer-only identity: 403, even with the scopes."""
    guarded = require_user("connections")(answer)

    response = TestApp(guarded).get(
        "/api/me", extra_environ={ENVIRON_KEY: CONSUMER_ONLY}, status=403
    )

    params = challenge_params(response.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_scope"
    assert params["error_description"] == "this resource acts for a user"


def test_require_user_lets_a_user_through_and_still_checks_scopes() -> None:
    """A user with the scopes passes; the same user lacking one does not."""
    web = TestApp(require_user("connections")(answer))
    web.get("/api/me", extra_environ={ENVIRON_KEY: ALICE}, status=200)

    web = TestApp(require_user("admin")(answer))
    web.get("/api/me", extra_environ={ENVIRON_KEY: ALICE}, status=403)


def test_werkzeug_view_gets_a_werkzeug_response() -> None:
    """A view taking a Request is refused with a werkzeug Response."""

    def view(request: Request) -> Response:
        return Response("answered")

    refused = require_scopes("admin")(view)(Request(environ_with(ALICE)))
    assert isinstance(refused, Response)
    assert refused.status_code == 403
    assert json.loads(refused.get_data()) == {
        "error": "insufficient_scope",
        "error_description": "the access token lacks a scope",
    }

    allowed = require_scopes("profile")(view)(Request(environ_with(ALICE)))
    assert allowed.get_data() == b"answered"


def test_a_method_finds_its_request_after_self() -> None:
    """On a method the request is the second argument; it is still found."""

    class Views:
        @require_scopes("connections")
        def me(self, request: Request) -> Response:
            identity = identity_of(request)
            assert identity is not None
            return Response(identity.user)

    assert Views().me(Request(environ_with(ALICE))).get_data() == b"alice"
    assert Views().me(Request(environ_with(None))).status_code == 401


def test_a_handler_called_without_a_request_is_an_error() -> None:
    """Outside any request the decorator cannot decide: TypeError, no answer."""

    @require_scopes("connections")
    def view() -> str:
        return "answered"

    with pytest.raises(TypeError):
        view()


def test_refusals_are_the_middlewares_refusals() -> None:
    """require_scopes refuses as an InterceptRule with the same scope does."""
    token = "a-token"
    validator = StaticValidator(
        token,
        {
            "active": True,
            "client_id": "notes-app",
            "username": "alice",
            "scope": "connections",
            "exp": int(time.time()) + 3600,
        },
    )
    by_rule = TrustAssociationMiddleware(
        answer,
        validator,
        policy=InterceptPolicy([InterceptRule("/", scopes=frozenset({"admin"}))]),
    )
    by_view = TrustAssociationMiddleware(require_scopes("admin")(answer), validator)
    headers = {"Authorization": f"Bearer {token}"}

    from_rule = TestApp(by_rule).get("/api/me", headers=headers, status=403)
    from_view = TestApp(by_view).get("/api/me", headers=headers, status=403)

    assert from_view.body == from_rule.body
    for name in ("WWW-Authenticate", "Content-Type", "Cache-Control"):
        assert from_view.headers[name] == from_rule.headers[name]
