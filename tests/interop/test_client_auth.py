"""The introspection client authenticates by Basic, form fields or a signed JWT."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from oauth_tai.errors import ConfigurationError, ProviderUnavailable
from oauth_tai.system import open_provider
from oauth_tai.validators.client_auth import ClientAuth
from oauth_tai.validators.introspection import IntrospectionClient
from tests.conftest import LiveServer
from tests.interop.authlib_provider import (
    RESOURCE_SERVER_ID,
    AuthlibProvider,
    Client,
    running_provider,
)
from tests.oauth_client import INTROSPECT, REDIRECT_URI, register_consumer


@pytest.fixture
def authlib_provider() -> Iterator[AuthlibProvider]:
    with running_provider() as provider:
        yield provider


def _pem_pair(kind: str) -> tuple[str, str]:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )
    return private, public


def _key_client(
    provider: AuthlibProvider, public: str, private: str
) -> IntrospectionClient:
    """Register the resource server by its public key; sign with ``private``."""
    provider.clients[RESOURCE_SERVER_ID] = Client(
        RESOURCE_SERVER_ID,
        "",
        "Files API",
        auth_method="private_key_jwt",
        public_key=public,
    )
    auth = ClientAuth(
        "private_key_jwt",
        RESOURCE_SERVER_ID,
        private_key=private,
        audience=provider.introspection_url,
    )
    return IntrospectionClient(
        provider.introspection_url, RESOURCE_SERVER_ID, auth=auth
    )


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_private_key_jwt_is_accepted_by_authlib(
    authlib_provider: AuthlibProvider, kind: str
) -> None:
    """Authlib checks the assertion's signature, iss, sub, aud, exp and jti."""
    private, public = _pem_pair(kind)
    client = _key_client(authlib_provider, public, private)
    token = authlib_provider.issue_token()

    first = client.introspect(token)
    second = client.introspect(token)

    assert first is not None and first["active"] is True
    assert second is not None, "each call signs a fresh assertion (new jti)"
    assert len(authlib_provider.assertion_ids) == 2


def test_a_key_the_provider_does_not_hold_is_refused(
    authlib_provider: AuthlibProvider,
) -> None:
    _, public = _pem_pair("rsa")
    other_private, _ = _pem_pair("rsa")
    client = _key_client(authlib_provider, public, other_private)

    with pytest.raises(ProviderUnavailable):
        client.introspect(authlib_provider.issue_token())


def test_client_secret_post_works_against_our_provider(live_server: LiveServer) -> None:
    api = register_consumer(live_server, "posting-api", "Posting API", REDIRECT_URI)
    register_consumer(live_server, "phone-app", "Phone App", REDIRECT_URI)
    provider = open_provider(live_server.settings())
    grant = provider.store.consent("alice", "phone-app", "connections")
    provider.store.issue(grant, "phone-token", None, 3600)
    auth = ClientAuth(
        "client_secret_post", api.client_id, client_secret=api.client_secret
    )
    client = IntrospectionClient(
        live_server.base + INTROSPECT, api.client_id, auth=auth
    )

    answer = client.introspect("phone-token")

    assert auth.header() is None, "the secret travels in the form, not Basic"
    assert answer is not None and answer["username"] == "alice"


@pytest.mark.parametrize(
    "method, options",
    [
        ("client_secret_jwt", {"client_secret": "s"}),
        ("private_key_jwt", {}),
        ("private_key_jwt", {"private_key": "not a key"}),
        ("client_secret_post", {}),
    ],
)
def test_unusable_client_authentication_is_a_configuration_error(
    method: str, options: dict[str, str]
) -> None:
    with pytest.raises(ConfigurationError):
        ClientAuth(method, "api", audience="https://idp.example/introspect", **options)
