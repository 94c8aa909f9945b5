"""The provider's own login form, for users of the built-in directory."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from werkzeug.routing import Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from oauth_tai.provider.hashing import new_secret
from oauth_tai.provider.sessions import LOGIN_COOKIE, SESSION_COOKIE

if TYPE_CHECKING:
    from collections.abc import Callable

    from oauth_tai.provider.app import ProviderApp

logger = logging.getLogger(__name__)


class LoginPages:
    """Log in with a name and password, and log out.

    The login form is protected against CSRF by a nonce cookie whose HMAC
    the form carries, since there is no session to bind it to yet.

    :param app: the provider application, for sessions, users and pages.
    :param logout_path: where the logout form posts.
    """

    def __init__(self, app: ProviderApp, logout_path: str) -> None:
        self.app = app
        self.logout_path = logout_path

    def routes(self) -> list[tuple[Rule, Callable[..., Response]]]:
        return [
            (
                Rule(self.app.login_path, endpoint="login", methods=["GET", "POST"]),
                self.on_login,
            ),
            (
                Rule(self.logout_path, endpoint="logout", methods=["POST"]),
                self.on_logout,
            ),
        ]

    def on_login(self, request: Request) -> Response:
        target = _local_target(request.values.get("next", ""))
        if request.method == "GET":
            nonce = new_secret()
            response = self.app.page(
                "login.html",
                next=target,
                failed=False,
                csrf_token=self.app.sessions.csrf_token(nonce),
                action=self.app.login_path,
            )
            self.app.set_cookie(
                request, response, LOGIN_COOKIE, nonce, self.app.login_path
            )
            return response

        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not self.app.sessions.check_csrf(nonce, request.form.get("csrf_token")):
            return redirect(f"{self.app.login_path}?{urlencode({'next': target})}", 303)

        username = request.form.get("username", "")
        password = request.form.get("password", "")
        if not self.app.users.authenticate(username, password):
            logger.info("failed login for %r", username)
            return self.app.page(
                "login.html",
                status=401,
                next=target,
                failed=True,
                username=username,
                csrf_token=self.app.sessions.csrf_token(nonce),
                action=self.app.login_path,
            )

        response = redirect(target, code=303)
        session_id = self.app.sessions.create(username)
        self.app.set_cookie(request, response, SESSION_COOKIE, session_id, "/")
        response.delete_cookie(LOGIN_COOKIE, path=self.app.login_path)
        return response

    def on_logout(self, request: Request) -> Response:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            self.app.sessions.end(session_id)
        response = redirect(self.app.login_path, code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _local_target(target: str) -> str:
    # Only a path on this server: an absolute or scheme-relative URL here
    # would make the login form an open redirector.
    # Browsers read "//host", "/\\host" and paths with control characters
    # as other sites, so only a plain absolute path passes.
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return "/"
    if target.startswith(("//", "/\\")) or any(ch < " " for ch in target):
        return "/"
    return target
