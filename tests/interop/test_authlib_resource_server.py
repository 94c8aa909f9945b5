"""Authlib's resource protector accepts oauth-tai's introspection answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from authlib.oauth2.rfc6749 import ResourceProtector
from authlib.oauth2.rfc6750 import InsufficientScopeError, InvalidTokenError
from authlib.oauth2.rfc7662 import IntrospectTokenValidator

from oauth_tai.system import open_provider
from tests.conftest import LiveServer
from tests.oauth_client import INTROSPECT, register_consumer
from tests.oauth_client import REDIRECT_URI as CALLBACK


@dataclass
class AuthlibRequest:
    """The one thing Authlib's protector reads from a request."""

    headers: dict[str, str] = field(default_factory=dict)


def _protector(live_server: LiveServer, client_id: str, secret: str) -> Any:
    class OurIntrospection(IntrospectTokenValidator):  # type: ignore[misc]
        def introspect_token(self, token_string: str) -> dict[str, Any]:
            answer = requests.post(
                live_server.base + INTROSPECT,
                data={"token": token_string},
                auth=(client_id, secret),
                timeout=10,
            )
            answer.raise_for_status()
            result: dict[str, Any] = answer.json()
            return result

    protector = ResourceProtector()
    protector.register_token_validator(OurIntrospection(realm="api"))
    return protector


@pytest.fixture
def protected(live_server: LiveServer) -> tuple[Any, str, Any]:
    """A protector using a resource-server consumer, and a user's token."""
    api = register_consumer(live_server, "resource-api", "Resource API", CALLBACK)
    register_consumer(live_server, "mobile-app", "Mobile App", CALLBACK)
    provider = open_provider(live_server.settings())
    grant = provider.store.consent("alice", "mobile-app", "connections")
    provider.store.issue(grant, "alice-access-token", None, 3600)
    protector = _protector(live_server, api.client_id, api.client_secret)
    return protector, "alice-access-token", provider


def _request(token: str) -> AuthlibRequest:
    return AuthlibRequest({"Authorization": f"Bearer {token}"})


def test_a_live_token_is_accepted_with_its_claims(
    protected: tuple[Any, str, Any],
) -> None:
    protector, token, _ = protected

    claims = protector.validate_request(["connections"], _request(token))

    assert claims["active"] is True
    assert claims["username"] == "alice"
    assert claims["client_id"] == "mobile-app"
    assert claims["token_type"] == "Bearer"


def test_a_scope_the_token_lacks_is_refused(protected: tuple[Any, str, Any]) -> None:
    protector, token, _ = protected
    with pytest.raises(InsufficientScopeError):
        protector.validate_request(["admin"], _request(token))


def test_unknown_and_revoked_tokens_are_refused(
    protected: tuple[Any, str, Any],
) -> None:
    protector, token, provider = protected
    with pytest.raises(InvalidTokenError):
        protector.validate_request(["connections"], _request("no-such-token"))

    provider.store.revoke_user("alice")
    with pytest.raises(InvalidTokenError):
        protector.validate_request(["connections"], _request(token))
