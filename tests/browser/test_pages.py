"""The provider's pages in a real browser: log in, consent, Application Access.

A person's path through the pages, clicking what they would click and
reading what they would read; the consumer's side (the token exchange and
the API calls) goes over HTTP with requests, as a consumer's server would.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from playwright.sync_api import Page, Response, expect

from tests.browser.conftest import CONSUMER_NAME, USERNAME, Consumer
from tests.conftest import LiveServer
from tests.oauth_client import (
    AUTHORIZE,
    PASSWORD,
    PROFILE,
    loopback_session,
    post_token,
)

APPS_PAGE = "/connections/oauth/apps"
# The default grant lifetime: six months from the consent.
GRANT_LIFETIME = 15_768_000


def log_in_to_consent(page: Page, live_server: LiveServer, url: str) -> Response:
    """Open an authorization URL, log in as alice; return the consent page."""
    page.goto(url)
    expect(page).to_have_url(re.compile(re.escape(live_server.base + "/oauth2/login")))
    page.get_by_label("User name").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)

    def is_consent(response: Response) -> bool:
        return response.url.startswith(live_server.base + AUTHORIZE)

    with page.expect_response(is_consent) as consent:
        page.get_by_role("button", name="Log in").click()
    heading = page.get_by_role("heading", name=f"Authorize {CONSUMER_NAME}?")
    expect(heading).to_be_visible()
    return consent.value


def callback_query(page: Page, consumer: Consumer) -> dict[str, list[str]]:
    """Wait for the browser to land on the consumer; return the query."""
    redirect_uri = consumer.credentials.redirect_uri
    page.wait_for_url(re.compile(re.escape(redirect_uri + "?")))
    expect(page.get_by_text("Back home.")).to_be_visible()
    url = urlsplit(page.url)
    assert consumer.site.callbacks == [f"{url.path}?{url.query}"]
    return parse_qs(url.query)


def profile_status(http: requests.Session, base: str, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return http.get(base + PROFILE, headers=headers, timeout=30).status_code


def one_of_days(*timestamps: float) -> re.Pattern[str]:
    """Match the page's date for any of ``timestamps`` (a test may span midnight)."""
    days = {datetime.fromtimestamp(t, UTC).strftime("%d %b %Y") for t in timestamps}
    return re.compile("^(" + "|".join(map(re.escape, sorted(days))) + ")$")


def test_authorize_use_and_revoke_on_application_access(
    page: Page, live_server: LiveServer, consumer: Consumer, tmp_path: Path
) -> None:
    before = datetime.now(UTC).timestamp()
    log_in_to_consent(page, live_server, consumer.authorization_url(live_server.base))
    expect(
        page.get_by_text(f"{CONSUMER_NAME} wants to act on your behalf")
    ).to_be_visible()
    page.screenshot(path=tmp_path / "consent.png", full_page=True)

    page.get_by_role("button", name="Authorize").click()
    query = callback_query(page, consumer)
    after = datetime.now(UTC).timestamp()
    assert query["state"] == [consumer.state]
    assert len(query["code"]) == 1

    http = loopback_session()
    answer = post_token(
        http,
        live_server.base,
        consumer.credentials,
        {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": consumer.credentials.redirect_uri,
            "code_verifier": consumer.verifier,
        },
    )
    assert answer.status_code == 200, answer.text
    access_token = answer.json()["access_token"]
    assert profile_status(http, live_server.base, access_token) == 200

    page.goto(live_server.base + APPS_PAGE)
    expect(page.get_by_role("heading", name="Application Access")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=CONSUMER_NAME)
    cells = row.get_by_role("cell")
    expect(cells.nth(0)).to_have_text(CONSUMER_NAME)
    expect(cells.nth(1)).to_have_text(one_of_days(before, after))
    expiry = one_of_days(before + GRANT_LIFETIME, after + GRANT_LIFETIME)
    expect(cells.nth(2)).to_have_text(expiry)
    page.screenshot(path=tmp_path / "apps.png", full_page=True)

    row.get_by_role("button", name=f"Revoke {CONSUMER_NAME}").click()
    expect(page.get_by_role("status")).to_have_text(
        f"You revoked the access of {CONSUMER_NAME}. It can no longer act for you."
    )
    expect(page.get_by_role("row").filter(has_text=CONSUMER_NAME)).to_have_count(0)
    expect(page.get_by_text("No application has access to your data.")).to_be_visible()
    assert profile_status(http, live_server.base, access_token) == 401


def test_deny_sends_access_denied_with_the_state(
    page: Page, live_server: LiveServer, consumer: Consumer
) -> None:
    log_in_to_consent(page, live_server, consumer.authorization_url(live_server.base))

    page.get_by_role("button", name="Deny").click()
    query = callback_query(page, consumer)
    assert query == {"error": ["access_denied"], "state": [consumer.state]}


def test_consent_page_cannot_be_framed(
    page: Page, live_server: LiveServer, consumer: Consumer
) -> None:
    url = consumer.authorization_url(live_server.base)
    consent = log_in_to_consent(page, live_server, url)
    assert consent.status == 200
    headers = consent.all_headers()
    assert headers["x-frame-options"].upper() == "DENY"
    policy = [part.strip() for part in headers["content-security-policy"].split(";")]
    assert "frame-ancestors 'none'" in policy

    # A site frames the consent page to trick a click on Authorize: the
    # browser, which would send alice's cookie along, must not show it.
    consent_url = page.url
    page.goto(consumer.site.framing(consent_url), wait_until="load")
    [frame] = page.main_frame.child_frames
    assert frame.url != consent_url
    assert frame.get_by_role("button", name="Authorize").count() == 0
