"""The Connections-style REST API a consumer calls with a bearer token."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from oauth_tai.connections.entries import ACTIVITY, STATUS, EntryStore
from oauth_tai.identity import Identity, get_identity

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

API_ROOT = "/connections/opensocial/oauth/rest"
MAX_CONTENT = 10_000
# A post is text of at most MAX_CONTENT characters; its JSON is far smaller.
MAX_BODY_BYTES = 256 * 1024
# Activity verbs a consumer may post; anything else is refused rather than
# shown to the user's followers under a made-up verb.
VERBS = frozenset({"post", "share", "update", "like"})


class _ApiRequest(Request):
    # Refused with 413 before it is read: a post cannot need more.
    max_content_length = MAX_BODY_BYTES


class ApiError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class ConnectionsApp:
    """Profile, status updates and activity stream for the verified user."""

    def __init__(self, store: EntryStore, api_root: str = API_ROOT) -> None:
        self.store = store
        self.url_map = Map(
            [
                Rule(
                    f"{api_root}/people/@me/@self", endpoint="profile", methods=["GET"]
                ),
                Rule(
                    f"{api_root}/ublog/@me/@all",
                    endpoint="status",
                    methods=["GET", "POST"],
                ),
                Rule(
                    f"{api_root}/activitystreams/@me/@all",
                    endpoint="stream",
                    methods=["GET", "POST"],
                ),
            ]
        )

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        request = _ApiRequest(environ)
        try:
            endpoint, _args = self.url_map.bind_to_environ(environ).match()
            identity = _user_identity(request)
            response: Response = getattr(self, f"on_{endpoint}")(request, identity)
        except ApiError as exc:
            response = _json(
                {"error": exc.error, "error_description": exc.description},
                exc.status,
            )
        except HTTPException as exc:
            response = _json(
                {"error": exc.name.lower().replace(" ", "_")}, exc.code or 400
            )
        return response(environ, start_response)

    def on_profile(self, request: Request, identity: Identity) -> Response:
        user = identity.user
        return _json(
            {
                "entry": {
                    "id": f"urn:oauth-tai:person:{user}",
                    "userName": user,
                    "displayName": user,
                }
            }
        )

    def on_status(self, request: Request, identity: Identity) -> Response:
        assert identity.user is not None
        if request.method == "GET":
            return self._list(identity.user, STATUS)

        body = _json_body(request)
        entry = self.store.add(
            STATUS,
            identity.user,
            _content(body.get("content")),
            "post",
            _generator(identity),
        )
        return _json({"entry": entry.as_json()}, 201)

    def on_stream(self, request: Request, identity: Identity) -> Response:
        assert identity.user is not None
        if request.method == "GET":
            return self._list(identity.user, None)

        body = _json_body(request)
        verb = body.get("verb", "post")
        if not isinstance(verb, str) or verb not in VERBS:
            raise ApiError(
                400,
                "invalid_request",
                f"verb must be one of {', '.join(sorted(VERBS))}",
            )

        activity_object = body.get("object")
        content = (
            activity_object.get("content")
            if isinstance(activity_object, dict)
            else body.get("content")
        )
        entry = self.store.add(
            ACTIVITY, identity.user, _content(content), verb, _generator(identity)
        )
        return _json({"entry": entry.as_json()}, 201)

    def _list(self, username: str, kind: str | None) -> Response:
        found = [entry.as_json() for entry in self.store.list(username, kind)]
        return _json({"totalResults": len(found), "list": found})


def _user_identity(request: Request) -> Identity:
    identity = get_identity(request.environ)
    if identity is None:
        raise ApiError(401, "unauthorized", "this API needs a bearer token")
    if identity.user is None:
        raise ApiError(403, "insufficient_user", "this API acts for a user")
    return identity


def _generator(identity: Identity) -> tuple[str, str]:
    # The generator names the consumer the provider vouched for; whatever a
    # request body claims about it is never read.
    return identity.consumer_id, identity.consumer_name


def _json_body(request: Request) -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise ApiError(415, "invalid_request", "send a JSON body")

    try:
        body = json.loads(request.get_data())
    except (ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser will go.
        raise ApiError(400, "invalid_request", "the body is not valid JSON") from exc

    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")

    return body


def _content(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "invalid_request", "content must be a non-empty string")
    if not _storable(value):
        raise ApiError(400, "invalid_request", "content must be valid text")
    if len(value) > MAX_CONTENT:
        raise ApiError(
            400, "invalid_request", f"content is limited to {MAX_CONTENT} characters"
        )
    return value


def _storable(text: str) -> bool:
    # JSON may carry lone surrogates and NUL, which no database column
    # takes as text.
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")
