"""RFC 8414 metadata, and trusting a login made before the provider."""

from __future__ import annotations

import webtest

from oauth_tai.settings import Settings
from oauth_tai.system import Provider, build_app
from tests.oauth_client import AUTHORIZE, InProcessProvider, query_of

METADATA = "/.well-known/oauth-authorization-server/oauth2/endpoint/connectionsProvider"


def test_metadata_names_every_endpoint(anonymous: InProcessProvider) -> None:
    data = anonymous.app.get(METADATA).json
    issuer = "http://localhost/oauth2/endpoint/connectionsProvider"

    assert data["issuer"] == issuer
    for name in ("authorization", "token", "introspection", "revocation"):
        assert data[f"{name}_endpoint"].startswith(issuer + "/")
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["response_types_supported"] == ["code"]
    assert set(data["grant_types_supported"]) == {"authorization_code", "refresh_token"}


def test_the_public_url_fixes_the_issuer_whatever_the_host_header(
    settings: Settings, provider: Provider
) -> None:
    public = settings.with_values(public_url="https://idp.example.com/")
    app = webtest.TestApp(build_app(public))

    data = app.get(METADATA, headers={"Host": "attacker.example"}).json

    assert (
        data["issuer"] == "https://idp.example.com/oauth2/endpoint/connectionsProvider"
    )
    assert "attacker" not in str(data)


def test_remote_user_from_the_server_logs_the_user_in(
    settings: Settings, provider: Provider
) -> None:
    """With trust_remote_user, the WSGI server's REMOTE_USER is the user."""
    app = webtest.TestApp(
        build_app(settings.with_values(trust_remote_user=True)),
        extra_environ={"REMOTE_USER": "sso-alice"},
    )
    harness = InProcessProvider.create(app, provider)

    page = app.get(AUTHORIZE, harness.authorization_params())
    answer = page.forms[0].submit("decision", value="authorize")
    code = query_of(answer.headers["Location"])["code"]
    tokens = harness.exchange(code).json

    assert harness.api(tokens["access_token"]).json["entry"]["userName"] == "sso-alice"


def test_remote_user_is_ignored_unless_trusted(anonymous: InProcessProvider) -> None:
    answer = anonymous.app.get(
        AUTHORIZE,
        anonymous.authorization_params(),
        extra_environ={"REMOTE_USER": "mallory"},
    )
    assert answer.status_int == 303
    assert answer.headers["Location"].startswith("/oauth2/login?")
