"""What an administrator's changes to a consumer do to users and tokens."""

from __future__ import annotations

from pathlib import Path

import webtest

from oauth_tai.settings import Settings
from oauth_tai.system import Provider, build_app, build_system
from tests.oauth_client import AUTHORIZE, InProcessProvider, query_of


def test_disabling_a_consumer_ends_its_tokens_at_once(settings: Settings) -> None:
    """Disable: the cached token is refused, refresh fails, no new consent.

    The registry here is the serving process's own, so its cache is evicted
    at once; another process's change arrives through the revocation feed.
    """
    system = build_system(settings)
    site = InProcessProvider.create(webtest.TestApp(system.app), system.provider)
    assert site.log_in().status_int == 303
    tokens = site.issue_tokens()
    assert site.api(tokens["access_token"]).status_int == 200

    site.provider.registry.edit(site.consumer.client_id, enabled=False)

    assert site.api(tokens["access_token"]).status_int == 401
    assert site.refresh(tokens["refresh_token"]).status_int in (400, 401)
    answer = site.app.get(AUTHORIZE, site.authorization_params(), expect_errors=True)
    assert answer.status_int == 400
    assert "Location" not in answer.headers


def test_enabling_again_restores_no_grant(site: InProcessProvider) -> None:
    tokens = site.issue_tokens()
    registry = site.provider.registry
    registry.edit(site.consumer.client_id, enabled=False)
    registry.edit(site.consumer.client_id, enabled=True)

    assert site.api(tokens["access_token"]).status_int == 401
    assert site.introspect(tokens["access_token"]).json == {"active": False}
    # A new consent works as before.
    assert site.api(site.issue_tokens()["access_token"]).status_int == 200


def test_auto_authorized_consumer_skips_the_consent_page(
    site: InProcessProvider,
) -> None:
    site.provider.registry.edit(site.consumer.client_id, auto_authorize=True)

    answer = site.app.get(AUTHORIZE, site.authorization_params(state="s9"))

    assert answer.status_int == 303
    target = query_of(answer.headers["Location"])
    assert target["state"] == "s9" and target["code"]
    assert site.exchange(target["code"]).status_int == 200


def test_auto_authorize_still_needs_a_logged_in_user(
    anonymous: InProcessProvider,
) -> None:
    anonymous.provider.registry.edit(anonymous.consumer.client_id, auto_authorize=True)

    answer = anonymous.app.get(AUTHORIZE, anonymous.authorization_params())

    assert answer.status_int == 303
    assert answer.headers["Location"].startswith("/oauth2/login?")


def test_a_user_authenticated_upstream_needs_no_login(
    settings: Settings, provider: Provider
) -> None:
    """A trusted proxy's user header stands for the login form."""
    trusted = settings.with_values(trusted_user_header="X-Remote-User")
    app = webtest.TestApp(build_app(trusted))
    harness = InProcessProvider.create(app, provider)
    headers = {"X-Remote-User": "sso-user"}

    page = app.get(AUTHORIZE, harness.authorization_params(), headers=headers)
    assert "Authorize Reader App?" in page.text and "sso-user" in page.text

    answer = page.forms[0].submit("decision", value="authorize", headers=headers)
    code = query_of(answer.headers["Location"])["code"]
    tokens = harness.exchange(code).json
    profile = harness.api(tokens["access_token"]).json
    assert profile["entry"]["userName"] == "sso-user"


def test_the_user_header_is_ignored_unless_configured(
    anonymous: InProcessProvider,
) -> None:
    answer = anonymous.app.get(
        AUTHORIZE,
        anonymous.authorization_params(),
        headers={"X-Remote-User": "mallory"},
    )
    assert answer.status_int == 303
    assert answer.headers["Location"].startswith("/oauth2/login?")


def test_pages_can_be_overridden_from_a_folder(
    settings: Settings, provider: Provider, tmp_path: Path
) -> None:
    """An operator's base.html extends the built-in one and changes its header."""
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "base.html").write_text(
        '{% extends "oauth_tai/base.html" %}'
        "{% block header %}Example Corp sign-in{% endblock %}"
    )
    (folder / "login.html").write_text(
        '{% extends "oauth_tai/login.html" %}{% block title %}Anmelden{% endblock %}'
    )
    app = webtest.TestApp(build_app(settings.with_values(template_dir=str(folder))))

    page = app.get("/oauth2/login")

    assert "Example Corp sign-in" in page.text
    assert "<title>Anmelden</title>" in page.text
    assert 'name="csrf_token"' in page.text
