"""Introspection (RFC 7662) and revocation (RFC 7009)."""

from __future__ import annotations

import pytest

from tests.oauth_client import (
    INTROSPECT,
    REVOKE,
    InProcessProvider,
    basic_auth,
)


def assert_refused_by_api(site: InProcessProvider, access_token: str) -> None:
    answer = site.api(access_token)
    assert answer.status_int == 401, answer.text
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


@pytest.mark.parametrize("path", [INTROSPECT, REVOKE])
@pytest.mark.parametrize("secret", [None, "wrong"])
def test_introspection_and_revocation_need_client_auth(
    site: InProcessProvider, path: str, secret: str | None
) -> None:
    """Without a consumer's valid credentials: 401, and the token lives on."""
    tokens = site.issue_tokens()
    headers = {}
    if secret is not None:
        headers["Authorization"] = basic_auth(site.consumer.client_id, secret)

    answer = site.app.post(
        path, {"token": tokens["access_token"]}, headers=headers, expect_errors=True
    )

    assert answer.status_int == 401, answer.text
    assert answer.json["error"] == "invalid_client"
    assert "active" not in answer.json
    assert site.introspect(tokens["access_token"]).json["active"] is True


def test_introspection_describes_a_live_access_token(
    site: InProcessProvider,
) -> None:
    """A live access token: active, with its user, consumer, scope and expiry."""
    tokens = site.issue_tokens()

    answer = site.introspect(tokens["access_token"])

    assert answer.status_int == 200
    claims = answer.json
    assert claims["active"] is True
    assert claims["username"] == "bob"
    assert claims["client_id"] == site.consumer.client_id
    assert claims["scope"] == "connections"
    assert claims["token_type"] == "Bearer"
    assert claims["iss"].endswith("/oauth2/endpoint/connectionsProvider")
    assert "no-store" in answer.headers["Cache-Control"]


@pytest.mark.parametrize("kind", ["unknown", "revoked", "refresh"])
def test_introspection_says_only_inactive(site: InProcessProvider, kind: str) -> None:
    """Unknown, revoked and refresh tokens are {"active": false}, nothing more."""
    tokens = site.issue_tokens()
    token = {
        "unknown": "never-issued-token",
        "revoked": tokens["access_token"],
        "refresh": tokens["refresh_token"],
    }[kind]
    if kind == "revoked":
        assert site.revoke(token).status_int == 200

    answer = site.introspect(token)

    assert answer.status_int == 200
    assert answer.json == {"active": False}


def test_revoking_an_unknown_token_answers_200(site: InProcessProvider) -> None:
    """RFC 7009 §2.2: an invalid token is no error to the revoking consumer."""
    tokens = site.issue_tokens()

    answer = site.revoke("never-issued-token")

    assert answer.status_int == 200
    assert site.introspect(tokens["access_token"]).json["active"] is True


def test_revoking_an_access_token_ends_it_at_once(site: InProcessProvider) -> None:
    """A revoked access token is refused by the API, even if it was cached."""
    tokens = site.issue_tokens()
    assert site.api(tokens["access_token"]).status_int == 200

    answer = site.revoke(tokens["access_token"])

    assert answer.status_int == 200
    assert site.introspect(tokens["access_token"]).json == {"active": False}
    assert_refused_by_api(site, tokens["access_token"])


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_revoking_another_consumers_token_does_not_revoke_it(
    site: InProcessProvider, which: str
) -> None:
    """A consumer cannot end tokens that belong to another consumer."""
    tokens = site.issue_tokens()

    answer = site.revoke(tokens[which], site.other)

    assert answer.status_int == 200
    assert site.introspect(tokens["access_token"]).json["active"] is True
    assert site.api(tokens["access_token"]).status_int == 200
    refreshed = site.refresh(tokens["refresh_token"])
    assert refreshed.status_int == 200, refreshed.text


def test_revoking_a_refresh_token_ends_the_access_tokens_of_its_grant(
    site: InProcessProvider,
) -> None:
    """RFC 7009 §2.1: revoking the refresh token ends its grant's access tokens."""
    tokens = site.issue_tokens()
    refreshed = site.refresh(tokens["refresh_token"]).json
    for access_token in (tokens["access_token"], refreshed["access_token"]):
        assert site.api(access_token).status_int == 200

    answer = site.revoke(refreshed["refresh_token"])

    assert answer.status_int == 200
    for access_token in (tokens["access_token"], refreshed["access_token"]):
        assert site.introspect(access_token).json == {"active": False}
        assert_refused_by_api(site, access_token)
    refused = site.refresh(refreshed["refresh_token"])
    assert refused.status_int == 400
    assert refused.json["error"] == "invalid_grant"


def test_revoking_one_grant_leaves_another_consumers_grant(
    site: InProcessProvider,
) -> None:
    """Ending one consumer's grant leaves the user's grant to another alone."""
    mine = site.issue_tokens()
    code = site.code(consumer=site.other)
    theirs = site.exchange(code, consumer=site.other).json

    assert site.revoke(mine["refresh_token"]).status_int == 200

    assert site.introspect(theirs["access_token"]).json["active"] is True
    assert site.api(theirs["access_token"]).status_int == 200
