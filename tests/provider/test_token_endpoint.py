"""The token endpoint: client authentication, codes and PKCE."""

from __future__ import annotations

import base64

import pytest
import webtest

from tests.oauth_client import (
    TOKEN,
    ClientAuth,
    InProcessProvider,
    basic_auth,
    make_pkce,
)


def assert_error(answer: webtest.TestResponse, status: int, error: str) -> None:
    assert answer.status_int == status, answer.text
    assert answer.json["error"] == error
    assert "access_token" not in answer.json


def test_code_exchange_issues_tokens_for_twelve_hours(site: InProcessProvider) -> None:
    """The access token's expires_in is 43200 s by default, and it works."""
    verifier, challenge = make_pkce()

    answer = site.exchange(site.code(challenge=challenge), verifier)

    assert answer.status_int == 200, answer.text
    tokens = answer.json
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 43_200
    assert tokens["scope"] == "connections"
    assert tokens["refresh_token"] != tokens["access_token"]
    claims = site.introspect(tokens["access_token"]).json
    assert claims["exp"] - claims["iat"] == 43_200
    assert site.api(tokens["access_token"]).json["entry"]["userName"] == "bob"


@pytest.mark.parametrize("auth", ["basic", "form"])
def test_client_auth_by_basic_or_form_fields(
    site: InProcessProvider, auth: ClientAuth
) -> None:
    """Both RFC 6749 §2.3.1 ways for a consumer to authenticate are accepted."""
    verifier, challenge = make_pkce()
    fields = {
        "grant_type": "authorization_code",
        "code": site.code(challenge=challenge),
        "redirect_uri": site.consumer.redirect_uri,
        "code_verifier": verifier,
    }

    answer = site.token(fields, auth=auth)

    assert answer.status_int == 200, answer.text
    assert answer.json["access_token"]


def test_basic_with_a_client_id_field_naming_the_same_consumer(
    site: InProcessProvider,
) -> None:
    """HTTP Basic plus a matching client_id field (no secret field) is fine."""
    verifier, challenge = make_pkce()
    fields = {
        "grant_type": "authorization_code",
        "code": site.code(challenge=challenge),
        "redirect_uri": site.consumer.redirect_uri,
        "code_verifier": verifier,
        "client_id": site.consumer.client_id,
    }

    assert site.token(fields, auth="basic").status_int == 200


def test_basic_and_form_credentials_together_are_refused(
    site: InProcessProvider,
) -> None:
    """RFC 6749 §2.3: a consumer uses one method per request, never two."""
    verifier, challenge = make_pkce()
    code = site.code(challenge=challenge)
    consumer = site.consumer
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": consumer.redirect_uri,
        "code_verifier": verifier,
        "client_id": consumer.client_id,
        "client_secret": consumer.client_secret,
    }
    headers = {"Authorization": basic_auth(consumer.client_id, consumer.client_secret)}

    answer = site.app.post(TOKEN, fields, headers=headers, expect_errors=True)

    assert_error(answer, 401, "invalid_client")
    # The refusal was about client auth: the code is still good.
    assert site.exchange(code, verifier).status_int == 200


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


GARBLED_BASIC = (
    "Basic !!!not base64!!!",
    "Basic " + b64(b"reader-app")[:-1],
    "Basic " + b64(b"no-colon-here"),
    "Basic " + b64(b"\xff\xfe\xfd:\xc3\x28"),
    "Basic " + b64(b"reader-app:\xff"),
    "Basic ",
    "Basic",
    "Basic " + b64(b":"),
    "Digest username=reader-app",
)


def test_garbled_basic_is_invalid_client_not_a_crash(site: InProcessProvider) -> None:
    """Undecodable, colon-less or non-UTF-8 Basic credentials give 401."""
    fields = {"grant_type": "authorization_code", "code": "whatever"}

    for header in GARBLED_BASIC:
        answer = site.app.post(
            TOKEN, fields, headers={"Authorization": header}, expect_errors=True
        )

        assert answer.status_int == 401, (header, answer.text)
        assert answer.json["error"] == "invalid_client", header


@pytest.mark.parametrize("secret", ["wrong", ""])
def test_wrong_secret_is_invalid_client(site: InProcessProvider, secret: str) -> None:
    """A consumer with the wrong secret gets no tokens and a 401."""
    verifier, challenge = make_pkce()
    code = site.code(challenge=challenge)
    consumer = site.consumer
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": consumer.redirect_uri,
        "code_verifier": verifier,
    }
    headers = {"Authorization": basic_auth(consumer.client_id, secret)}

    answer = site.app.post(TOKEN, fields, headers=headers, expect_errors=True)

    assert_error(answer, 401, "invalid_client")


def test_token_responses_are_not_stored(site: InProcessProvider) -> None:
    """RFC 6749 §5.1: every token response says Cache-Control: no-store."""
    verifier, challenge = make_pkce()
    code = site.code(challenge=challenge)

    issued = site.exchange(code, verifier)
    refreshed = site.refresh(issued.json["refresh_token"])
    refused = site.exchange(code, verifier)

    assert (issued.status_int, refreshed.status_int, refused.status_int) == (
        200,
        200,
        400,
    )
    for answer in (issued, refreshed, refused):
        assert "no-store" in answer.headers["Cache-Control"]


def test_replayed_code_is_refused_and_revokes_what_it_issued(
    site: InProcessProvider,
) -> None:
    """RFC 6749 §4.1.2: a code used twice ends the tokens issued from it."""
    verifier, challenge = make_pkce()
    code = site.code(challenge=challenge)
    first = site.exchange(code, verifier)
    assert first.status_int == 200
    tokens = first.json
    assert site.api(tokens["access_token"]).status_int == 200

    replay = site.exchange(code, verifier)

    assert_error(replay, 400, "invalid_grant")
    assert site.introspect(tokens["access_token"]).json == {"active": False}
    refused = site.api(tokens["access_token"])
    assert refused.status_int == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert_error(site.refresh(tokens["refresh_token"]), 400, "invalid_grant")


@pytest.mark.parametrize("verifier", ["wrong-" + "v" * 50, None])
def test_code_with_a_challenge_needs_the_right_verifier(
    site: InProcessProvider, verifier: str | None
) -> None:
    """A wrong or missing PKCE verifier gets invalid_grant and no tokens."""
    _right, challenge = make_pkce()
    code = site.code(challenge=challenge)

    answer = site.exchange(code, verifier)

    assert_error(answer, 400, "invalid_grant")


def test_verifier_for_a_code_issued_without_challenge_is_refused(
    site: InProcessProvider,
) -> None:
    """A verifier sent for a code that had no challenge is refused, not ignored."""
    verifier, _challenge = make_pkce()
    code = site.code()

    answer = site.exchange(code, verifier)

    assert_error(answer, 400, "invalid_grant")


def test_code_without_challenge_works_without_verifier(
    site: InProcessProvider,
) -> None:
    """PKCE is optional for a confidential consumer: no challenge, no verifier."""
    answer = site.exchange(site.code())

    assert answer.status_int == 200, answer.text


def test_code_of_another_consumer_is_refused_and_not_used_up(
    site: InProcessProvider,
) -> None:
    """A consumer cannot use, nor destroy, a code issued to another one."""
    verifier, challenge = make_pkce()
    code = site.code(challenge=challenge)
    stolen = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": site.consumer.redirect_uri,
        "code_verifier": verifier,
    }

    answer = site.token(stolen, site.other)

    assert_error(answer, 400, "invalid_grant")
    rightful = site.exchange(code, verifier)
    assert rightful.status_int == 200, rightful.text
    assert site.introspect(rightful.json["access_token"]).json["client_id"] == (
        site.consumer.client_id
    )


def test_code_with_another_redirect_uri_is_refused(site: InProcessProvider) -> None:
    """The token request's redirect_uri must be the authorization request's."""
    verifier, challenge = make_pkce()
    fields = {
        "grant_type": "authorization_code",
        "code": site.code(challenge=challenge),
        "redirect_uri": "http://127.0.0.1:9/elsewhere",
        "code_verifier": verifier,
    }

    answer = site.token(fields)

    assert answer.status_int == 400
    assert "access_token" not in answer.json


def test_unknown_code_is_invalid_grant(site: InProcessProvider) -> None:
    """A code the provider never issued gets invalid_grant."""
    assert_error(site.exchange("never-issued-code"), 400, "invalid_grant")
