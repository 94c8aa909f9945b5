"""werkzeug, Flask and Django apps wrapped as the README says, on the real store.

The Flask and Django apps are the README's own lines, run as written; the
validator they call ``provider`` is the provider's token store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from webtest import TestApp

from oauth_tai import TrustAssociationMiddleware
from oauth_tai.provider.store import TokenStore
from tests.integration.apps import (
    challenge_params,
    run_snippet,
    werkzeug_me,
    wsgi_me,
)
from tests.integration.conftest import CLIENT_ID, USER, Tokens, bearer

REALM = "oauth-tai"


def wrap_wsgi(store: TokenStore) -> Any:
    return TrustAssociationMiddleware(wsgi_me, store, prefixes=("/api/",))


def wrap_werkzeug(store: TokenStore) -> Any:
    return TrustAssociationMiddleware(werkzeug_me, store, prefixes=("/api/",))


def wrap_flask(store: TokenStore) -> Any:
    return run_snippet("flask", provider=store)["app"]


def django_whoami(request: Any) -> Any:
    """What Django made of the request: REMOTE_USER and request.user."""
    from django.http import JsonResponse

    return JsonResponse(
        {
            "remote_user": request.META.get("REMOTE_USER"),
            "django_user": request.user.get_username(),
            "authenticated": request.user.is_authenticated,
        }
    )


@pytest.fixture(scope="session")
def django_configured() -> Iterator[None]:
    """Django configured once for the run: the README's view at /api/me,
    and RemoteUserMiddleware over an in-memory user database."""
    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.urls import path

    urls = ModuleType("oauth_tai_test_urls")
    if not settings.configured:
        settings.configure(
            SECRET_KEY="integration-test-" + "k" * 40,
            ALLOWED_HOSTS=["localhost"],
            ROOT_URLCONF=urls,
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
            ],
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": ":memory:",
                }
            },
            MIDDLEWARE=[
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.auth.middleware.RemoteUserMiddleware",
            ],
            AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.RemoteUserBackend"],
            USE_TZ=True,
        )
    django.setup()
    call_command("migrate", verbosity=0)

    views = run_snippet("django_views")
    urls.urlpatterns = [
        path("api/me", views["me"]),
        path("api/whoami", django_whoami),
    ]
    yield


def wrap_django(store: TokenStore) -> Any:
    return run_snippet("django_wsgi", provider=store)["application"]


WRAPPERS: dict[str, Callable[[TokenStore], Any]] = {
    "wsgi": wrap_wsgi,
    "werkzeug": wrap_werkzeug,
    "flask": wrap_flask,
    "django": wrap_django,
}


@pytest.fixture(params=list(WRAPPERS))
def web(request: pytest.FixtureRequest, tokens: Tokens) -> TestApp:
    if request.param == "django":
        request.getfixturevalue("django_configured")
    return TestApp(WRAPPERS[request.param](tokens.store))


def test_good_token_reaches_the_view_with_user_and_consumer(
    web: TestApp, tokens: Tokens
) -> None:
    """A live token with the scope: 200 and the user and consumer it stands for."""
    response = web.get("/api/me", headers=bearer(tokens.good), status=200)

    assert response.json == {"user": USER, "consumer": CLIENT_ID}


def test_no_token_is_refused_before_the_view(web: TestApp) -> None:
    """No token: the middleware's 401 with a bare challenge."""
    response = web.get("/api/me", status=401)

    assert challenge_params(response.headers["WWW-Authenticate"]) == {"realm": REALM}


def test_unknown_token_is_refused_before_the_view(web: TestApp) -> None:
    """A token the provider never issued: 401 invalid_token."""
    response = web.get("/api/me", headers=bearer("not-a-token-we-issued"), status=401)

    params = challenge_params(response.headers["WWW-Authenticate"])
    assert params["error"] == "invalid_token"
    assert response.json["error"] == "invalid_token"


def test_token_without_the_scope_is_refused_by_the_view(
    web: TestApp, tokens: Tokens
) -> None:
    """The middleware lets a live token through; require_scopes answers 403."""
    response = web.get("/api/me", headers=bearer(tokens.narrow), status=403)

    assert challenge_params(response.headers["WWW-Authenticate"]) == {
        "realm": REALM,
        "error": "insufficient_scope",
        "error_description": "the access token lacks a scope",
        "scope": "connections",
    }
    assert response.json["error"] == "insufficient_scope"
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.usefixtures("django_configured")
def test_django_sees_the_user_as_remote_user(tokens: Tokens) -> None:
    """Django's REMOTE_USER is the token's user; RemoteUserMiddleware logs in."""
    web = TestApp(wrap_django(tokens.store))

    response = web.get("/api/whoami", headers=bearer(tokens.good), status=200)

    assert response.json == {
        "remote_user": USER,
        "django_user": USER,
        "authenticated": True,
    }


@pytest.mark.usefixtures("django_configured")
def test_django_never_sees_a_client_remote_user(tokens: Tokens) -> None:
    """A REMOTE_USER planted in the environ is replaced by the token's user."""
    web = TestApp(wrap_django(tokens.store))

    response = web.get(
        "/api/whoami",
        headers=bearer(tokens.good),
        extra_environ={"REMOTE_USER": "mallory"},
        status=200,
    )

    assert response.json["remote_user"] == USER
    assert response.json["django_user"] == USER
