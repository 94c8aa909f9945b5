"""The provider's HTTP face: OAuth endpoints, login and consent pages."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    PrefixLoader,
    select_autoescape,
)
from oauthlib.oauth2 import (
    AccessDeniedError,
    FatalClientError,
    InvalidRequestError,
    OAuth2Error,
)
from werkzeug.exceptions import (
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from oauth_tai.audit import BY_USER, audit
from oauth_tai.provider.access import ApplicationAccess
from oauth_tai.provider.login import LoginPages
from oauth_tai.provider.registry import ClientRegistry
from oauth_tai.provider.server import ProviderServer
from oauth_tai.provider.sessions import SESSION_COOKIE, SessionStore
from oauth_tai.provider.users import UserDirectory
from oauth_tai.provider.validator import DEFAULT_SCOPE, SCOPES

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

# The largest request body the provider reads: its forms are far smaller.
MAX_BODY_BYTES = 64 * 1024

# The OAuth parameters a consent form carries from the authorization
# request to the decision, unchanged.
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)

# Where a handler leaves a session it created for an upstream user, so the
# cookie is set on whatever response it returns.
_NEW_SESSION = "oauth_tai.new_session"

PAGE_HEADERS = {
    # Consent must not be clickjacked: no page of ours may be framed.
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


class ProviderApp:
    """The provider as a WSGI application.

    :param server: the oauthlib endpoints.
    :param registry: the consumers.
    :param users: the built-in user directory.
    :param sessions: browser sessions.
    :param context_root: URL prefix, ``/oauth2`` by default.
    :param provider_name: the provider's name in its URLs.
    """

    def __init__(
        self,
        server: ProviderServer,
        registry: ClientRegistry,
        users: UserDirectory,
        sessions: SessionStore,
        *,
        context_root: str = "/oauth2",
        provider_name: str = "connectionsProvider",
        public_url: str = "",
        trust_remote_user: bool = False,
        trusted_user_header: str = "",
        template_dir: str = "",
    ) -> None:
        self.server = server
        self.registry = registry
        self.users = users
        self.sessions = sessions
        self.public_url = public_url.rstrip("/")
        self.trust_remote_user = trust_remote_user
        self.trusted_user_header = trusted_user_header
        self.endpoint_path = f"{context_root}/endpoint/{provider_name}"
        self.login_path = f"{context_root}/login"
        self.metadata_path = (
            f"/.well-known/oauth-authorization-server{self.endpoint_path}"
        )
        self.url_map = Map(
            [
                Rule(
                    f"{self.endpoint_path}/authorize",
                    endpoint="authorize",
                    methods=["GET", "POST"],
                ),
                Rule(f"{self.endpoint_path}/token", endpoint="token", methods=["POST"]),
                Rule(
                    f"{self.endpoint_path}/introspect",
                    endpoint="introspect",
                    methods=["POST"],
                ),
                Rule(
                    f"{self.endpoint_path}/revoke", endpoint="revoke", methods=["POST"]
                ),
                Rule(self.metadata_path, endpoint="metadata", methods=["GET"]),
            ],
            strict_slashes=False,
            merge_slashes=False,
        )
        self.templates = _templates(template_dir)
        self.handlers: dict[str, Callable[..., Response]] = {
            rule.endpoint: getattr(self, f"on_{rule.endpoint}")
            for rule in self.url_map.iter_rules()
        }
        routes = [
            *LoginPages(self, f"{context_root}/logout").routes(),
            *ApplicationAccess(
                self, f"{context_root}/authzMgmt/{provider_name}"
            ).routes(),
        ]
        for rule, handler in routes:
            self.url_map.add(rule)
            self.handlers[str(rule.endpoint)] = handler

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        request = _LimitedRequest(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
            _raise_on_bad_host(request, self.public_url)
            _raise_on_repeated_fields(request)
            response = self.handlers[endpoint](request, **args)
            new_session = request.environ.get(_NEW_SESSION)
            if new_session:
                self.set_cookie(request, response, SESSION_COOKIE, new_session, "/")
        except (NotFound, MethodNotAllowed) as exc:
            response = _json_error(exc.code or 404, exc.name.lower().replace(" ", "_"))
            if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
                response.headers["Allow"] = ", ".join(exc.valid_methods)
        except OAuth2Error as exc:
            # oauthlib raises some refusals instead of answering them (a
            # query string on a POST endpoint, for one).
            response = Response(exc.json, status=exc.status_code, headers=exc.headers)
            response.headers["Content-Type"] = "application/json"
            response.headers["Cache-Control"] = "no-store"
        except HTTPException as exc:
            error = "invalid_request"
            if isinstance(exc, RequestEntityTooLarge):
                error = "request_too_large"
            response = _json_error(exc.code or 400, error)
        return response

    # -- the OAuth endpoints ------------------------------------------------

    def on_token(self, request: Request) -> Response:
        headers, body, status = self.server.create_token_response(
            self._uri(request), "POST", _body(request), _headers(request)
        )
        if status == 401 and request.authorization is not None:
            # RFC 6749 §5.2: challenge with the scheme the client used.
            headers["WWW-Authenticate"] = 'Basic realm="oauth-tai"'
        return _oauth_response(headers, body, status)

    def on_introspect(self, request: Request) -> Response:
        headers, body, status = self.server.create_introspect_response(
            self._uri(request), "POST", _body(request), _headers(request)
        )
        return _oauth_response(headers, body, status)

    def on_revoke(self, request: Request) -> Response:
        headers, body, status = self.server.create_revocation_response(
            self._uri(request), "POST", _body(request), _headers(request)
        )
        headers["Cache-Control"] = "no-store"
        return _oauth_response(headers, body, status)

    def on_metadata(self, request: Request) -> Response:
        base = self._issuer(request)
        metadata = {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "introspection_endpoint": f"{base}/introspect",
            "revocation_endpoint": f"{base}/revoke",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": sorted(SCOPES),
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
        }
        return Response(json.dumps(metadata), mimetype="application/json")

    # -- authorization: login and consent -------------------------------------

    def on_authorize(self, request: Request) -> Response:
        # The consent form posts the parameters back as fields; a script may
        # keep them in the query string instead.
        params = request.args if request.method == "GET" else request.values
        oauth_params = {k: params[k] for k in AUTHORIZE_PARAMS if k in params}
        uri = self._uri(request, path_only=True) + "?" + urlencode(oauth_params)
        try:
            scopes, credentials = self.server.validate_authorization_request(uri)
        except FatalClientError as exc:
            # RFC 6749 §4.1.2.1: with a bad client or redirect URI the user
            # must not be sent anywhere.
            return self.page("error.html", status=400, error=exc.error)
        except OAuth2Error as exc:
            return redirect(exc.in_uri(exc.redirect_uri or ""), code=303)

        session = self.current_session(request)
        if session is None:
            target = request.path + "?" + urlencode(oauth_params)
            login = f"{self.login_path}?{urlencode({'next': target})}"
            return redirect(login, code=303)

        username, session_id = session
        consumer = self.registry.get(credentials["client_id"])
        if consumer.auto_authorize:
            # An administrator marked this consumer trusted, as Connections'
            # auto-authorize list does: no consent page.
            return self._grant(
                uri, username, consumer.client_id, scopes, credentials, auto=True
            )

        if request.method == "GET":
            return self.page(
                "consent.html",
                consumer=consumer,
                username=username,
                params=oauth_params,
                scopes=scopes,
                csrf_token=self.sessions.csrf_token(session_id),
                action=self._uri(request, path_only=True),
            )

        if not self.sessions.check_csrf(session_id, request.form.get("csrf_token")):
            return self.page(
                "error.html",
                status=400,
                error="form_expired",
            )

        if request.form.get("decision") != "authorize":
            audit(
                "consent_denied", by=BY_USER, user=username, consumer=consumer.client_id
            )
            denied = AccessDeniedError(state=credentials.get("state"))
            return redirect(denied.in_uri(credentials["redirect_uri"]), code=303)

        return self._grant(uri, username, consumer.client_id, scopes, credentials)

    def _grant(
        self,
        uri: str,
        username: str,
        client_id: str,
        scopes: list[str],
        credentials: dict[str, Any],
        *,
        auto: bool = False,
    ) -> Response:
        scope = " ".join(scopes) or DEFAULT_SCOPE
        grant_id = self.server.validator.store.consent(username, client_id, scope)
        audit(
            "consent_granted",
            by=BY_USER,
            user=username,
            consumer=client_id,
            scope=scope,
            grant=grant_id,
            auto_authorized=auto,
        )
        headers, _body_text, status = self.server.create_authorization_response(
            uri,
            "GET",
            None,
            None,
            scopes,
            {"user": username, "grant_id": grant_id, **credentials},
        )
        return Response(status=303 if status == 302 else status, headers=headers)

    def current_session(self, request: Request) -> tuple[str, str] | None:
        """Return the logged-in user and their session id, if there is one.

        A user authenticated upstream (a trusted ``REMOTE_USER`` or proxy
        header) gets a session on first sight, so consent forms can be
        bound to it like any other.
        """
        session_id = request.cookies.get(SESSION_COOKIE, "")
        username = self.sessions.user(session_id)
        upstream = self._upstream_user(request)
        if upstream is None or upstream == username:
            return None if username is None else (username, session_id)

        session_id = self.sessions.create(upstream)
        request.environ[_NEW_SESSION] = session_id
        return upstream, session_id

    def _upstream_user(self, request: Request) -> str | None:
        if self.trust_remote_user:
            user = request.environ.get("REMOTE_USER")
            if isinstance(user, str) and user:
                return user

        if self.trusted_user_header:
            user = request.headers.get(self.trusted_user_header, "").strip()
            if user:
                return user

        return None

    # -- helpers -------------------------------------------------------------

    def page(self, name: str, status: int = 200, **context: Any) -> Response:
        """Render one of the provider's HTML pages."""
        html = self.templates.get_template(name).render(**context)
        return Response(html, status=status, mimetype="text/html", headers=PAGE_HEADERS)

    def _uri(self, request: Request, path_only: bool = False) -> str:
        base = self.public_url or request.host_url.rstrip("/")
        uri = base + request.path
        if not path_only and request.query_string:
            uri += "?" + request.query_string.decode("latin-1")
        return uri

    def _issuer(self, request: Request) -> str:
        base = self.public_url or request.host_url.rstrip("/")
        return base + self.endpoint_path

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, path: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            path=path,
            httponly=True,
            samesite="Lax",
            secure=urlsplit(self._uri(request)).scheme == "https",
        )


class _LimitedRequest(Request):
    # Every form the provider reads is a few hundred bytes; refusing large
    # bodies before reading them keeps one client from filling memory.
    max_content_length = MAX_BODY_BYTES
    max_form_memory_size = MAX_BODY_BYTES


def _raise_on_repeated_fields(request: Request) -> None:
    # RFC 6749 §3.1 and §3.2: no parameter may be sent more than once.
    # Reading the body first keeps it for oauthlib, which parses it again.
    request.get_data()
    for fields in (request.args, request.form):
        for name, values in fields.lists():
            if len(values) > 1:
                raise InvalidRequestError(description=f"{name} is sent twice")


# RFC 9110 §7.2: a host name or address, and an optional port.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)


def _raise_on_bad_host(request: Request, public_url: str) -> None:
    # Without a configured public URL the issuer comes from Host, so a
    # Host that is not a host name must not become one.
    if not public_url and not _HOST.fullmatch(request.host):
        raise InvalidRequestError(description="the Host header is not valid")


def _templates(template_dir: str) -> Environment:
    # An operator's folder comes first; the built-in pages stay reachable as
    # "oauth_tai/<name>" so an override can extend the original.
    builtin = PackageLoader("oauth_tai.provider", "templates")
    loaders: list[BaseLoader] = [builtin]
    if template_dir:
        loaders.insert(0, FileSystemLoader(template_dir))
    loaders.append(PrefixLoader({"oauth_tai": builtin}))
    return Environment(
        loader=ChoiceLoader(loaders), autoescape=select_autoescape(default=True)
    )


def _body(request: Request) -> str:
    return request.get_data(as_text=True)


def _headers(request: Request) -> dict[str, str]:
    return dict(request.headers)


def _oauth_response(headers: dict[str, str], body: str, status: int) -> Response:
    return Response(body, status=status, headers=headers)


def _json_error(status: int, error: str) -> Response:
    return Response(
        json.dumps({"error": error}), status=status, mimetype="application/json"
    )
