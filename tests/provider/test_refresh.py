"""The refresh_token grant: rotation, reuse detection and races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import LiveServer
from tests.oauth_client import (
    REDIRECT_URI,
    InProcessProvider,
    add_user,
    authorization_url,
    authorize_as_user,
    loopback_session,
    make_pkce,
    post_token,
    register_consumer,
)


def test_refresh_rotates_the_refresh_token(site: InProcessProvider) -> None:
    """A refresh gives a new access and refresh token; the old one stops working."""
    tokens = site.issue_tokens()

    answer = site.refresh(tokens["refresh_token"])

    assert answer.status_int == 200, answer.text
    fresh = answer.json
    assert fresh["expires_in"] == 43_200
    assert fresh["access_token"] != tokens["access_token"]
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert "no-store" in answer.headers["Cache-Control"]
    assert site.api(fresh["access_token"]).status_int == 200
    assert site.introspect(fresh["access_token"]).json["username"] == "bob"


def test_presenting_a_retired_refresh_token_revokes_the_grant(
    site: InProcessProvider,
) -> None:
    """RFC 9700 §4.14.2: reuse of a rotated refresh token ends the whole grant."""
    tokens = site.issue_tokens()
    fresh = site.refresh(tokens["refresh_token"]).json
    assert site.api(fresh["access_token"]).status_int == 200
    assert site.api(tokens["access_token"]).status_int == 200

    reuse = site.refresh(tokens["refresh_token"])

    assert reuse.status_int == 400
    assert reuse.json["error"] == "invalid_grant"
    after = site.refresh(fresh["refresh_token"])
    assert after.status_int == 400
    assert after.json["error"] == "invalid_grant"
    for access_token in (tokens["access_token"], fresh["access_token"]):
        assert site.introspect(access_token).json == {"active": False}
        answer = site.api(access_token)
        assert answer.status_int == 401
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_refresh_token_of_another_consumer_is_refused_and_kept(
    site: InProcessProvider,
) -> None:
    """Another consumer cannot use a refresh token, nor spend it."""
    tokens = site.issue_tokens()

    stolen = site.refresh(tokens["refresh_token"], site.other)

    assert stolen.status_int == 400
    assert stolen.json["error"] == "invalid_grant"
    rightful = site.refresh(tokens["refresh_token"])
    assert rightful.status_int == 200, rightful.text
    assert site.api(rightful.json["access_token"]).status_int == 200


def test_concurrent_uses_of_one_refresh_token_let_exactly_one_win(
    live_server: LiveServer,
) -> None:
    """Two simultaneous refreshes with one refresh token: exactly one gets 200."""
    consumer = register_consumer(live_server, "race-app", "Race App", REDIRECT_URI)
    add_user(live_server, "carol")
    browser = loopback_session()

    for round_number in range(3):
        verifier, challenge = make_pkce()
        url = authorization_url(
            live_server.base, consumer, challenge=challenge, state=f"r{round_number}"
        )
        code = authorize_as_user(browser, url, "carol")["code"]
        exchange = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": consumer.redirect_uri,
            "code_verifier": verifier,
        }
        issued = post_token(browser, live_server.base, consumer, exchange)
        assert issued.status_code == 200, issued.text
        refresh = {
            "grant_type": "refresh_token",
            "refresh_token": issued.json()["refresh_token"],
        }
        barrier = threading.Barrier(2)

        def use_once(
            _index: int,
            barrier: threading.Barrier = barrier,
            refresh: dict[str, str] = refresh,
        ) -> requests.Response:
            with loopback_session() as session:
                barrier.wait(timeout=10)
                return post_token(session, live_server.base, consumer, refresh)

        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(use_once, range(2)))

        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 400], [answer.text for answer in answers]
        loser = next(answer for answer in answers if answer.status_code == 400)
        assert loser.json()["error"] == "invalid_grant"

    assert "Traceback" not in live_server.log()
