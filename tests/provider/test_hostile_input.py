"""Hostile or clumsy input gets a clear 4xx, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.oauth_client import (
    INTROSPECT,
    PROFILE,
    STATUS,
    STREAM,
    TOKEN,
    InProcessProvider,
    basic_auth,
)

METADATA = "/.well-known/oauth-authorization-server/oauth2/endpoint/connectionsProvider"


def _auth(site: InProcessProvider) -> dict[str, str]:
    consumer = site.consumer
    return {"Authorization": basic_auth(consumer.client_id, consumer.client_secret)}


def test_a_query_string_on_the_token_endpoint_is_invalid_request(
    site: InProcessProvider,
) -> None:
    answer = site.app.post(
        TOKEN + "?x=1",
        {"grant_type": "refresh_token", "refresh_token": "x"},
        headers=_auth(site),
        expect_errors=True,
    )
    assert answer.status_int == 400
    assert answer.json["error"] == "invalid_request"


@pytest.mark.parametrize("path", [TOKEN, INTROSPECT])
def test_a_repeated_parameter_is_invalid_request(
    site: InProcessProvider, path: str
) -> None:
    answer = site.app.post(
        path,
        "token=a&token=b&grant_type=refresh_token&refresh_token=a&refresh_token=b",
        headers={**_auth(site), "Content-Type": "application/x-www-form-urlencoded"},
        expect_errors=True,
    )
    assert answer.status_int == 400
    assert answer.json["error"] == "invalid_request"


def test_a_repeated_authorization_parameter_redirects_nowhere(
    site: InProcessProvider,
) -> None:
    query = "&".join(f"{k}={v}" for k, v in site.authorization_params().items())
    answer = site.app.get(
        "/oauth2/endpoint/connectionsProvider/authorize?"
        + query
        + "&redirect_uri=https://attacker.example/",
        expect_errors=True,
    )
    assert answer.status_int == 400
    assert "Location" not in answer.headers


def test_a_huge_body_is_refused_before_it_is_read(site: InProcessProvider) -> None:
    answer = site.app.post(
        TOKEN,
        "grant_type=" + "a" * 200_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        expect_errors=True,
    )
    assert answer.status_int == 413


def test_a_host_header_that_is_no_host_is_refused(site: InProcessProvider) -> None:
    for host in ("a@evil.example", "<script>", "evil.example/x"):
        answer = site.app.get(METADATA, headers={"Host": host}, expect_errors=True)
        assert answer.status_int == 400, host
        assert "evil" not in answer.text


def test_invalid_client_over_basic_challenges_with_basic(
    site: InProcessProvider,
) -> None:
    answer = site.app.post(
        TOKEN,
        {"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"Authorization": basic_auth(site.consumer.client_id, "wrong")},
        expect_errors=True,
    )
    assert answer.status_int == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")


def test_a_path_with_doubled_slashes_is_not_found(site: InProcessProvider) -> None:
    answer = site.app.post(
        "/oauth2//endpoint/connectionsProvider/token", {"x": "1"}, expect_errors=True
    )
    assert answer.status_int == 404


def test_the_root_leads_to_application_access(site: InProcessProvider) -> None:
    assert site.app.get("/").headers["Location"].endswith("/connections/oauth/apps")


def test_a_false_revoked_message_is_not_shown(site: InProcessProvider) -> None:
    site.issue_tokens()
    page = site.app.get("/connections/oauth/apps", {"revoked": site.consumer.client_id})
    assert "You revoked" not in page.text


@pytest.mark.parametrize(
    "path, body",
    [
        (STATUS, "[" * 100_000 + "]" * 100_000),
        (STREAM, '{"verb": ["post"], "content": "x"}'),
        (STREAM, '{"verb": {}, "content": "x"}'),
        (STATUS, '{"content": "\\ud800"}'),
        (STATUS, '{"content": "a\\u0000b"}'),
        (STATUS, json.dumps({"content": "x" * 300_000})),
    ],
)
def test_hostile_json_gets_a_4xx(site: InProcessProvider, path: str, body: str) -> None:
    token = site.issue_tokens()["access_token"]
    answer = site.app.post(
        path,
        body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
        expect_errors=True,
    )
    assert answer.status_int in (400, 413), answer.text
    assert (
        site.app.get(PROFILE, headers={"Authorization": f"Bearer {token}"}).status_int
        == 200
    )


def test_deleting_a_user_ends_their_browser_session(site: InProcessProvider) -> None:
    site.provider.users.delete(site.username)

    answer = site.app.get(
        "/oauth2/endpoint/connectionsProvider/authorize", site.authorization_params()
    )
    assert answer.status_int == 303
    assert answer.headers["Location"].startswith("/oauth2/login?")
