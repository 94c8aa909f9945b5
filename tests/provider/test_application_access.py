"""Application Access: the user sees and revokes the consumers they trust."""

from __future__ import annotations

import base64

from tests.oauth_client import PASSWORD, InProcessProvider

PAGE = "/connections/oauth/apps"
API = "/oauth2/authzMgmt/connectionsProvider"


def _basic(username: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def test_the_page_lists_grants_and_revoke_ends_them(site: InProcessProvider) -> None:
    tokens = site.issue_tokens()
    page = site.app.get(PAGE)
    assert "Reader App" in page.text and "Other App" not in page.text
    assert page.headers["X-Frame-Options"] == "DENY"

    answer = page.forms[0].submit()
    assert answer.status_int == 303
    confirmation = answer.follow()
    assert "You revoked the access of" in confirmation.text
    assert "Reader App" in confirmation.text
    assert "No application has access" in confirmation.text

    assert site.api(tokens["access_token"]).status_int == 401
    assert site.refresh(tokens["refresh_token"]).status_int == 400


def test_the_page_needs_a_login(anonymous: InProcessProvider) -> None:
    answer = anonymous.app.get(PAGE)
    assert answer.status_int == 303
    assert answer.headers["Location"].startswith("/oauth2/login?")


def test_revoke_without_the_csrf_token_changes_nothing(
    site: InProcessProvider,
) -> None:
    tokens = site.issue_tokens()
    answer = site.app.post(
        PAGE + "/revoke",
        {"client_id": site.consumer.client_id, "csrf_token": "forged"},
        expect_errors=True,
    )
    assert answer.status_int == 400
    assert site.api(tokens["access_token"]).status_int == 200


def test_the_json_api_lists_and_revokes(site: InProcessProvider) -> None:
    tokens = site.issue_tokens()
    browser = site.new_browser()
    auth = _basic(site.username, PASSWORD)

    listed = browser.app.get(API, headers=auth).json["applications"]
    assert [app["client_id"] for app in listed] == [site.consumer.client_id]
    assert listed[0]["name"] == "Reader App"
    assert listed[0]["expires_at"] > listed[0]["authorized_at"]

    url = f"{API}/client/{site.consumer.client_id}"
    assert browser.app.delete(url, headers=auth).status_int == 204
    assert browser.app.get(API, headers=auth).json == {"applications": []}
    assert site.api(tokens["access_token"]).status_int == 401
    assert browser.app.delete(url, headers=auth, expect_errors=True).status_int == 404


def test_the_json_api_refuses_without_credentials(site: InProcessProvider) -> None:
    browser = site.new_browser()
    assert browser.app.get(API, expect_errors=True).status_int == 401
    wrong = _basic(site.username, "not the password")
    assert browser.app.get(API, headers=wrong, expect_errors=True).status_int == 401
    garbled = {"Authorization": "Basic %%%"}
    assert browser.app.get(API, headers=garbled, expect_errors=True).status_int == 401


def test_a_user_cannot_revoke_another_users_grant(site: InProcessProvider) -> None:
    tokens = site.issue_tokens()
    site.provider.users.add("eve", "eve-password")
    url = f"{API}/client/{site.consumer.client_id}"

    answer = site.new_browser().app.delete(
        url, headers=_basic("eve", "eve-password"), expect_errors=True
    )

    assert answer.status_int == 404
    assert site.api(tokens["access_token"]).status_int == 200
