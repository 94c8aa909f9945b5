"""The authorization endpoint: redirects, refusals and the consent page."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from sqlalchemy import Table, func, select

from oauth_tai.database import codes, grants
from tests.oauth_client import (
    AUTHORIZE,
    LOGIN,
    REDIRECT_URI,
    InProcessProvider,
    query_of,
)


def count_rows(site: InProcessProvider, table: Table) -> int:
    """Return how many rows a table of the provider's database holds."""
    with site.provider.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_authorize_redirects_with_code_and_state(site: InProcessProvider) -> None:
    """Authorize sends the user back to the registered URI with code and state."""
    answer = site.decide("authorize", state="keep-me")

    assert answer.status_int == 303
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query_of(location)
    assert params["state"] == "keep-me"
    assert len(params["code"]) >= 20
    assert count_rows(site, codes) == 1


def test_a_code_carries_the_entropy_the_security_guide_states(
    site: InProcessProvider,
) -> None:
    """oauthlib makes the codes: letters and digits, chosen by SystemRandom."""
    code = site.code()
    bits = int(len(code) * math.log2(26 + 26 + 10))
    guide = (Path(__file__).parents[2] / "docs" / "security.md").read_text()

    assert re.fullmatch(r"[A-Za-z0-9]+", code)
    assert f"{len(code)} letters and digits, about {bits} bits" in " ".join(
        guide.split()
    )


def test_deny_redirects_with_access_denied_and_state(site: InProcessProvider) -> None:
    """Deny sends the user back with error=access_denied, the state and no code."""
    answer = site.decide("deny", state="deny-state")

    assert answer.status_int == 303
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query_of(location)
    assert params["error"] == "access_denied"
    assert params["state"] == "deny-state"
    assert "code" not in params
    assert count_rows(site, codes) == 0
    assert count_rows(site, grants) == 0


def test_without_a_session_the_user_is_sent_to_log_in(
    anonymous: InProcessProvider,
) -> None:
    """An authorization request from a stranger leads to the login page and back."""
    params = anonymous.authorization_params()
    answer = anonymous.app.get(AUTHORIZE, params)

    assert answer.status_int == 303
    location = answer.headers["Location"]
    assert location.startswith(LOGIN + "?")
    back = query_of(location)["next"]
    assert back.startswith(AUTHORIZE + "?")
    assert query_of(back) == params


WRONG_REDIRECT_URIS = (
    "http://127.0.0.1:9/elsewhere",
    "http://127.0.0.1:9/callback/",
    "http://127.0.0.1:9/callback?extra=1",
    "http://127.0.0.1:10/callback",
    "https://attacker.invalid/callback",
)


@pytest.mark.parametrize("logged_in", [True, False])
def test_wrong_redirect_uri_shows_an_error_page_and_no_redirect(
    anonymous: InProcessProvider, logged_in: bool
) -> None:
    """A redirect URI other than the registered one is never redirected to."""
    if logged_in:
        assert anonymous.log_in().status_int == 303

    for redirect_uri in WRONG_REDIRECT_URIS:
        params = {**anonymous.authorization_params(), "redirect_uri": redirect_uri}
        answer = anonymous.app.get(AUTHORIZE, params, expect_errors=True)

        assert answer.status_int == 400, redirect_uri
        assert answer.content_type == "text/html", redirect_uri
        assert "Location" not in answer.headers, redirect_uri
        assert not answer.forms, f"a form was offered for {redirect_uri}"

    assert count_rows(anonymous, codes) == 0


def test_unknown_client_id_shows_an_error_page_and_no_redirect(
    site: InProcessProvider,
) -> None:
    """A request naming no registered consumer is not redirected anywhere."""
    for client_id in ("nobody", "", "reader-app "):
        params = {**site.authorization_params(), "client_id": client_id}
        answer = site.app.get(AUTHORIZE, params, expect_errors=True)

        assert answer.status_int == 400, client_id
        assert answer.content_type == "text/html", client_id
        assert "Location" not in answer.headers, client_id
        assert not answer.forms, f"a form was offered for {client_id!r}"

    assert count_rows(site, codes) == 0


def test_consent_page_names_the_consumer_and_cannot_be_framed(
    site: InProcessProvider,
) -> None:
    """The consent page shows who asks and forbids framing (clickjacking)."""
    page = site.consent_page()

    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "no-store" in page.headers["Cache-Control"]
    assert site.consumer.name in page.text
    assert page.forms[0].get("csrf_token").value


def other_session_token(site: InProcessProvider) -> str:
    """Return a consent CSRF token that belongs to another browser session."""
    other = site.new_browser()
    assert other.log_in().status_int == 303
    token: str = other.consent_page().forms[0].get("csrf_token").value
    return token


@pytest.mark.parametrize("forged", ["missing", "empty", "wrong", "other-session"])
def test_consent_without_a_valid_csrf_token_issues_no_code(
    site: InProcessProvider, forged: str
) -> None:
    """A consent POST must carry the session's CSRF token, or no code is issued."""
    form = site.consent_page().forms[0]
    fields = {name: form.get(name).value for name in site.authorization_params()}
    fields["decision"] = "authorize"
    if forged == "empty":
        fields["csrf_token"] = ""
    elif forged == "wrong":
        fields["csrf_token"] = "0" * 64
    elif forged == "other-session":
        fields["csrf_token"] = other_session_token(site)

    answer = site.app.post(AUTHORIZE, fields, expect_errors=True)

    assert answer.status_int == 400
    assert "Location" not in answer.headers
    assert "code=" not in answer.text
    assert count_rows(site, codes) == 0
    assert count_rows(site, grants) == 0


def test_consent_with_the_csrf_token_posted_by_hand_issues_a_code(
    site: InProcessProvider,
) -> None:
    """The same hand-made POST with the right token works, so the refusal is CSRF."""
    form = site.consent_page().forms[0]
    fields = {name: form.get(name).value for name in site.authorization_params()}
    fields["csrf_token"] = form.get("csrf_token").value
    fields["decision"] = "authorize"

    answer = site.app.post(AUTHORIZE, fields)

    assert answer.status_int == 303
    assert "code" in query_of(answer.headers["Location"])
