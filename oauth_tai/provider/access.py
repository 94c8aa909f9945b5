"""Application Access: the user's view of the consumers they authorized.

The HTML page lists each grant with its dates and a Revoke button; the JSON
API does the same for scripts, authenticated by the browser session or by
the user's name and password over HTTP Basic.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from werkzeug.routing import Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from oauth_tai.audit import BY_USER, audit
from oauth_tai.provider.basic import parse_basic
from oauth_tai.provider.store.grants import GrantInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from oauth_tai.provider.app import ProviderApp

logger = logging.getLogger(__name__)

PAGE_PATH = "/connections/oauth/apps"


class ApplicationAccess:
    """The Application Access page and its JSON API.

    :param app: the provider application, for sessions, users and pages.
    :param api_path: the JSON API's path, ``/oauth2/authzMgmt/<provider>``.
    """

    def __init__(self, app: ProviderApp, api_path: str) -> None:
        self.app = app
        self.api_path = api_path

    def routes(self) -> list[tuple[Rule, Callable[..., Response]]]:
        return [
            # The site's root, where a login without a destination lands.
            (Rule("/", endpoint="home", methods=["GET"]), self.on_home),
            (Rule(PAGE_PATH, endpoint="apps", methods=["GET"]), self.on_page),
            (
                Rule(f"{PAGE_PATH}/revoke", endpoint="apps_revoke", methods=["POST"]),
                self.on_page_revoke,
            ),
            (
                Rule(self.api_path, endpoint="authz_list", methods=["GET"]),
                self.on_api_list,
            ),
            (
                Rule(
                    f"{self.api_path}/client/<client_id>",
                    endpoint="authz_revoke",
                    methods=["DELETE"],
                ),
                self.on_api_revoke,
            ),
        ]

    # -- the page ------------------------------------------------------------

    def on_home(self, request: Request) -> Response:
        return redirect(PAGE_PATH, code=303)

    def on_page(self, request: Request) -> Response:
        session = self.app.current_session(request)
        if session is None:
            login = f"{self.app.login_path}?{urlencode({'next': PAGE_PATH})}"
            return redirect(login, code=303)

        username, session_id = session
        grants = self.app.server.validator.store.grants_of(username)
        revoked = request.args.get("revoked")
        revoked_name = None
        # The confirmation comes from a link anyone could send, so it is
        # shown only when it is true: the consumer holds no grant now.
        if revoked and all(grant.client_id != revoked for grant in grants):
            consumer = self.app.registry.find(revoked)
            revoked_name = consumer.name if consumer else None

        return self.app.page(
            "apps.html",
            username=username,
            grants=[_grant_row(grant) for grant in grants],
            revoked_name=revoked_name,
            csrf_token=self.app.sessions.csrf_token(session_id),
            action=f"{PAGE_PATH}/revoke",
        )

    def on_page_revoke(self, request: Request) -> Response:
        session = self.app.current_session(request)
        if session is None:
            return redirect(PAGE_PATH, code=303)

        username, session_id = session
        if not self.app.sessions.check_csrf(session_id, request.form.get("csrf_token")):
            return self.app.page(
                "error.html",
                status=400,
                error="form_expired",
            )

        client_id = request.form.get("client_id", "")
        self._revoke(username, client_id)
        return redirect(f"{PAGE_PATH}?{urlencode({'revoked': client_id})}", code=303)

    # -- the JSON API ------------------------------------------------------------

    def on_api_list(self, request: Request) -> Response:
        username = self._api_user(request)
        if username is None:
            return _unauthorized()

        grants = self.app.server.validator.store.grants_of(username)
        body = {"applications": [_grant_json(grant) for grant in grants]}
        return Response(
            json.dumps(body),
            mimetype="application/json",
            headers={"Cache-Control": "no-store"},
        )

    def on_api_revoke(self, request: Request, client_id: str) -> Response:
        username = self._api_user(request)
        if username is None:
            return _unauthorized()

        if not self._revoke(username, client_id):
            return Response(
                json.dumps({"error": "not_found"}),
                status=404,
                mimetype="application/json",
            )
        gone = Response(status=204)
        del gone.headers["Content-Type"]
        return gone

    def _revoke(self, username: str, client_id: str) -> bool:
        store = self.app.server.validator.store
        ended = store.revoke_consumer_for_user(username, client_id)
        if ended:
            audit(
                "access_revoked",
                by=BY_USER,
                user=username,
                consumer=client_id,
                grants=ended,
            )
        return ended > 0

    def _api_user(self, request: Request) -> str | None:
        # A cross-site page cannot send DELETE with the user's cookie
        # without a CORS preflight, which this API never answers.
        session = self.app.current_session(request)
        if session is not None:
            return session[0]

        credentials = parse_basic(request.headers.get("Authorization", ""))
        if credentials is None:
            return None

        username, password = credentials
        return username if self.app.users.authenticate(username, password) else None


def _grant_row(grant: GrantInfo) -> dict[str, str]:
    return {
        "client_id": grant.client_id,
        "name": grant.consumer_name,
        "authorized": _date(grant.authorized_at),
        "expires": _date(grant.expires_at),
    }


def _grant_json(grant: GrantInfo) -> dict[str, object]:
    return {
        "client_id": grant.client_id,
        "name": grant.consumer_name,
        "scope": grant.scope,
        "authorized_at": _iso(grant.authorized_at),
        "expires_at": _iso(grant.expires_at),
    }


def _date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%d %b %Y")


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unauthorized() -> Response:
    return Response(
        json.dumps({"error": "unauthorized"}),
        status=401,
        mimetype="application/json",
        headers={"WWW-Authenticate": 'Basic realm="Application Access"'},
    )
