"""A consumer's whole life with a user, against ``oauth-tai serve`` over HTTP.

The server runs as its own process on a loopback port. The consumer is
requests-oauthlib's ``OAuth2Session``; the user's browser is a
``requests.Session`` filling in the real HTML forms. The redirect to the
consumer's ``redirect_uri`` is read from ``Location`` and never followed.
"""

from __future__ import annotations

from urllib.parse import urljoin

import pytest
import requests
from requests_oauthlib import OAuth2Session

from tests.conftest import LiveServer
from tests.oauth_client import (
    AUTHORIZE,
    PASSWORD,
    PROFILE,
    REVOKE,
    STATUS,
    STREAM,
    TOKEN,
    ConsumerCredentials,
    add_user,
    decide,
    log_in,
    loopback_session,
    make_pkce,
    post_token,
    query_of,
    register_consumer,
)

CONSUMER_NAME = "Status Poster"


@pytest.fixture
def consumer(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> ConsumerCredentials:
    """A consumer registered with the CLI, and the user bob added with it."""
    # The consumer side of oauthlib refuses plain http unless told; the
    # server is on loopback, where http is what the provider allows too.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    redirect_uri = "http://127.0.0.1:9/callback"
    registered = register_consumer(
        live_server, "status-poster", CONSUMER_NAME, redirect_uri
    )
    add_user(live_server, "bob", PASSWORD)
    return registered


def consumer_session(consumer: ConsumerCredentials) -> OAuth2Session:
    oauth = OAuth2Session(consumer.client_id, redirect_uri=consumer.redirect_uri)
    oauth.trust_env = False
    return oauth


def sign_in_and_decide(
    live_server: LiveServer, authorization_url: str, decision: str
) -> dict[str, str]:
    """Be bob's browser: log in when sent to, then click a consent button."""
    browser = loopback_session()
    first = browser.get(authorization_url, allow_redirects=False, timeout=30)
    assert first.status_code == 303, first.text
    login_url = urljoin(live_server.base, first.headers["Location"])
    assert login_url.startswith(live_server.base + "/oauth2/login?")

    logged_in = log_in(browser, login_url, "bob", PASSWORD)
    assert logged_in.status_code == 303, logged_in.text
    consent_url = urljoin(live_server.base, logged_in.headers["Location"])
    assert consent_url.startswith(live_server.base + AUTHORIZE + "?")

    answer = decide(browser, consent_url, decision)
    assert answer.status_code == 303, answer.text
    location = answer.headers["Location"]
    assert location.startswith("http://127.0.0.1:9/callback?")
    return query_of(location)


def assert_invalid_token(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_consumer_acts_for_the_user_until_its_tokens_end(
    live_server: LiveServer, consumer: ConsumerCredentials
) -> None:
    """Code flow with PKCE, the API as the user, refresh, revocation and reuse."""
    base = live_server.base
    oauth = consumer_session(consumer)
    verifier, challenge = make_pkce()
    url, state = oauth.authorization_url(
        base + AUTHORIZE, code_challenge=challenge, code_challenge_method="S256"
    )

    # The user logs in and authorizes; the code comes back with the state.
    redirect = sign_in_and_decide(live_server, url, "authorize")
    assert redirect["state"] == state
    token = oauth.fetch_token(
        base + TOKEN,
        code=redirect["code"],
        client_secret=consumer.client_secret,
        code_verifier=verifier,
    )
    assert token["expires_in"] == 43_200
    first_access, first_refresh = token["access_token"], token["refresh_token"]

    # The API answers as bob, and credits posts to the consumer, whatever
    # the body claims.
    profile = oauth.get(base + PROFILE, timeout=30)
    assert profile.status_code == 200, profile.text
    assert profile.json()["entry"]["userName"] == "bob"

    content = "Posted through an OAuth consumer"
    posted = oauth.post(
        base + STATUS,
        json={"content": content, "generator": {"id": "forged"}},
        timeout=30,
    )
    assert posted.status_code == 201, posted.text
    expected_generator = {"id": consumer.client_id, "displayName": CONSUMER_NAME}
    assert posted.json()["entry"]["generator"] == expected_generator

    stream = oauth.get(base + STREAM, timeout=30)
    assert stream.status_code == 200, stream.text
    ours = [e for e in stream.json()["list"] if e["object"]["content"] == content]
    assert len(ours) == 1
    assert ours[0]["generator"] == expected_generator
    assert ours[0]["actor"]["id"] == "bob"

    # A refresh rotates both tokens; the new access token works.
    refreshed = oauth.refresh_token(
        base + TOKEN,
        refresh_token=first_refresh,
        auth=(consumer.client_id, consumer.client_secret),
    )
    second_access, second_refresh = (
        refreshed["access_token"],
        refreshed["refresh_token"],
    )
    assert second_access != first_access
    assert second_refresh != first_refresh
    assert oauth.get(base + PROFILE, timeout=30).status_code == 200

    # Revoking the access token ends it at once for the API.
    http = loopback_session()
    revoked = http.post(
        base + REVOKE,
        data={"token": second_access, "token_type_hint": "access_token"},
        auth=(consumer.client_id, consumer.client_secret),
        timeout=30,
    )
    assert revoked.status_code == 200, revoked.text
    assert_invalid_token(oauth.get(base + PROFILE, timeout=30))

    # The first access token is still good: nothing has ended the grant yet.
    bearer = {"Authorization": f"Bearer {first_access}"}
    assert http.get(base + PROFILE, headers=bearer, timeout=30).status_code == 200

    # The retired refresh token no longer works, and presenting it again
    # ends the whole grant: every token of it stops working.
    replay = {"grant_type": "refresh_token", "refresh_token": first_refresh}
    reused = post_token(http, base, consumer, replay)
    assert reused.status_code == 400, reused.text
    assert reused.json()["error"] == "invalid_grant"

    assert_invalid_token(http.get(base + PROFILE, headers=bearer, timeout=30))
    latest = {"grant_type": "refresh_token", "refresh_token": second_refresh}
    after = post_token(http, base, consumer, latest)
    assert after.status_code == 400, after.text
    assert after.json()["error"] == "invalid_grant"
    assert "Traceback" not in live_server.log()


def test_user_who_denies_gives_the_consumer_nothing(
    live_server: LiveServer, consumer: ConsumerCredentials
) -> None:
    """Deny redirects with access_denied and the state; there is no code to use."""
    oauth = consumer_session(consumer)
    _verifier, challenge = make_pkce()
    url, state = oauth.authorization_url(
        live_server.base + AUTHORIZE,
        code_challenge=challenge,
        code_challenge_method="S256",
    )

    redirect = sign_in_and_decide(live_server, url, "deny")

    assert redirect == {"error": "access_denied", "state": state}
