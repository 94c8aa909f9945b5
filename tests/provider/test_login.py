"""The login form: wrong credentials, CSRF and where it sends the user next."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from oauth_tai.provider.sessions import SESSION_COOKIE
from tests.oauth_client import AUTHORIZE, LOGIN, PASSWORD, InProcessProvider


def log_in_with_next(site: InProcessProvider, target: str) -> str:
    """Post the login form with ``target`` as next; return the redirect."""
    form = site.app.get(LOGIN).forms[0]
    form["username"] = site.username
    form["password"] = PASSWORD
    form["next"].force_value(target)
    answer = form.submit()
    assert answer.status_int == 303, answer.text
    location: str = answer.headers["Location"]
    return location


def test_right_password_starts_a_session(anonymous: InProcessProvider) -> None:
    """The right password sets the session cookie and opens the consent page."""
    answer = anonymous.log_in()

    assert answer.status_int == 303
    assert SESSION_COOKIE in anonymous.app.cookies
    assert anonymous.consumer.name in anonymous.consent_page().text


@pytest.mark.parametrize(
    ("username", "password"),
    [("bob", PASSWORD + "x"), ("bob", ""), ("nobody", PASSWORD)],
)
def test_wrong_credentials_show_the_login_page_again_and_no_session(
    anonymous: InProcessProvider, username: str, password: str
) -> None:
    """A wrong password or user gives the form again with 401 and no session."""
    form = anonymous.app.get(LOGIN).forms[0]
    form["username"] = username
    form["password"] = password

    answer = form.submit(expect_errors=True)

    assert answer.status_int == 401
    assert "Location" not in answer.headers
    assert answer.forms[0].get("password").value == ""
    assert answer.forms[0].get("csrf_token").value
    assert "not right" in answer.text
    assert SESSION_COOKIE not in anonymous.app.cookies
    params = anonymous.authorization_params()
    again = anonymous.app.get(AUTHORIZE, params)
    assert again.status_int == 303
    assert again.headers["Location"].startswith(LOGIN + "?")


@pytest.mark.parametrize("forged", ["missing", "wrong"])
def test_login_without_its_csrf_token_starts_no_session(
    anonymous: InProcessProvider, forged: str
) -> None:
    """A login POST that did not come from the form (login CSRF) logs nobody in."""
    fields = {"username": anonymous.username, "password": PASSWORD, "next": "/"}
    if forged == "wrong":
        fields["csrf_token"] = "f" * 64
    anonymous.app.get(LOGIN)

    answer = anonymous.app.post(LOGIN, fields, expect_errors=True)

    assert answer.status_int == 303
    assert answer.headers["Location"].startswith(LOGIN + "?")
    assert SESSION_COOKIE not in anonymous.app.cookies


def test_next_refuses_absolute_urls(anonymous: InProcessProvider) -> None:
    """An absolute or scheme-relative next (open redirect) sends the user to /."""
    for target in (
        "http://attacker.invalid/",
        "https://attacker.invalid/steal",
        "//attacker.invalid/steal",
        "https:attacker.invalid",
        "javascript:alert(1)",
        "attacker.invalid/steal",
    ):
        assert log_in_with_next(anonymous, target) == "/", target


def test_next_with_browser_tricks_stays_on_this_site(
    anonymous: InProcessProvider,
) -> None:
    """Targets a browser would read as another host are not followed there."""
    for target in (
        "///attacker.invalid/steal",
        "/\\attacker.invalid/steal",
        "/\\/attacker.invalid/steal",
        "/\t/attacker.invalid/steal",
    ):
        location = log_in_with_next(anonymous, target)

        assert location.startswith("/"), target
        assert not location.startswith("//"), target
        assert "\\" not in location, target
        assert not urlsplit(location).netloc, target


def test_next_keeps_a_local_path(anonymous: InProcessProvider) -> None:
    """A path on this server is where the user goes after logging in."""
    target = AUTHORIZE + "?response_type=code&client_id=reader-app&state=s"

    assert log_in_with_next(anonymous, target) == target


def test_login_page_carries_a_refused_next_as_root(
    anonymous: InProcessProvider,
) -> None:
    """The login page itself never echoes an outside URL into its form."""
    page = anonymous.app.get(LOGIN, {"next": "https://attacker.invalid/"})

    assert page.forms[0].get("next").value == "/"
    assert page.headers["X-Frame-Options"] == "DENY"
