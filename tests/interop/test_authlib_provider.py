"""oauth-tai against an authorization server it did not write: Authlib's.

The tokens come from Authlib's own RFC 9068 generator through its token
endpoint, or are signed by joserfc with keys the provider publishes; the
middleware checks them with PyJWT, or asks Authlib's RFC 7662 endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oauth_tai.validators.introspection import IntrospectionClient
from oauth_tai.validators.jwt import JwtIssuer, JwtValidator
from tests.interop import handmade
from tests.interop.authlib_provider import (
    CONSUMER_ID,
    CONSUMER_NAME,
    RESOURCE_SERVER_ID,
    RESOURCE_SERVER_SECRET,
    USER_ID,
    USERNAME,
    AuthlibProvider,
    running_provider,
)
from tests.interop.echo import bearer, protect


@pytest.fixture
def authlib_provider() -> Iterator[AuthlibProvider]:
    with running_provider() as provider:
        yield provider


def jwt_validator(provider: AuthlibProvider) -> JwtValidator:
    return JwtValidator(
        [JwtIssuer(provider.issuer, provider.jwks_url, provider.audience)]
    )


def introspection_client(provider: AuthlibProvider) -> IntrospectionClient:
    return IntrospectionClient(
        provider.introspection_url,
        RESOURCE_SERVER_ID,
        RESOURCE_SERVER_SECRET,
        timeout=5.0,
    )


def test_the_middleware_accepts_a_jwt_from_authlibs_token_endpoint(
    authlib_provider: AuthlibProvider,
) -> None:
    app = protect(jwt_validator(authlib_provider))
    token = authlib_provider.issue_token("files.read")

    seen = app.get("/files", headers=bearer(token)).json

    assert seen == {
        "user": USERNAME,
        "auth_type": "Bearer",
        "consumer": CONSUMER_ID,
        "consumer_name": CONSUMER_NAME,
        "scopes": ["files.read"],
    }


def test_the_middleware_accepts_authlib_tokens_through_its_introspection(
    authlib_provider: AuthlibProvider,
) -> None:
    app = protect(introspection_client(authlib_provider))
    token = authlib_provider.issue_token()

    seen = app.get("/files", headers=bearer(token)).json

    assert seen["user"] == USERNAME
    assert seen["consumer"] == CONSUMER_ID
    assert seen["scopes"] == ["files.read", "files.write"]


def test_authlibs_introspection_refuses_a_tampered_token(
    authlib_provider: AuthlibProvider,
) -> None:
    app = protect(introspection_client(authlib_provider))
    token = handmade.tamper(authlib_provider.issue_token(), username="mallory")

    response = app.get("/files", headers=bearer(token), status=401)

    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_both_ways_of_checking_a_token_agree(
    authlib_provider: AuthlibProvider,
) -> None:
    token = authlib_provider.issue_token()

    local = jwt_validator(authlib_provider).introspect(token)
    remote = introspection_client(authlib_provider).introspect(token)

    assert local is not None and remote is not None
    fields = ("active", "client_id", "username", "sub", "scope", "exp", "iat", "iss")
    assert {f: local[f] for f in fields} == {f: remote[f] for f in fields}
    assert local["sub"] == USER_ID


@pytest.mark.parametrize(
    ("kty", "alg"),
    [
        ("RSA", "RS256"),
        ("RSA", "PS256"),
        ("EC", "ES256"),
        # joserfc warns that RFC 9864 prefers "Ed25519"; PyJWT knows only
        # "EdDSA", which is what providers send today.
        pytest.param(
            "OKP", "EdDSA", marks=pytest.mark.filterwarnings("ignore:EdDSA is dep")
        ),
    ],
)
def test_each_default_algorithm_verifies(
    authlib_provider: AuthlibProvider, kty: str, alg: str
) -> None:
    key = authlib_provider.new_key(kty, publish=True)
    token = authlib_provider.sign(header=authlib_provider.header(key, alg=alg), key=key)
    app = protect(jwt_validator(authlib_provider))

    seen = app.get("/files", headers=bearer(token)).json

    assert seen["user"] == USERNAME
