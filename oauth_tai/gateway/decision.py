"""The decision endpoint for nginx ``auth_request`` and Traefik ForwardAuth.

The proxy in front asks ``/auth`` about each request before passing it
on, sending the client's headers (the Authorization header among them)
and the original method and URI: nginx in ``X-Original-Method`` and
``X-Original-URI``, which its configuration sets, Traefik in
``X-Forwarded-Method`` and ``X-Forwarded-Uri``, which it sets itself.
The answer is the middleware's: 200 with the identity headers for the
proxy to copy to the upstream, 200 with none for a request the policy
does not intercept, or the refusal (401, 403, 400, 503) with its
``WWW-Authenticate`` or ``Retry-After`` for the proxy to return.

What it trusts: the proxy, for the original method and URI, so only the
proxy may reach it. A request carrying both kinds of headers is refused
with 400: only one proxy sets them, so the other kind came from the
client, which must not choose the request the policy judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from oauth_tai.cache import TokenCache
from oauth_tai.gateway.wire import IdentityHeaders, canonical_path, respond_json
from oauth_tai.identity import DEFAULT_USER_CLAIMS, get_identity
from oauth_tai.metrics import INVALID_REQUESTS
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.rules import InterceptPolicy
from oauth_tai.validators import TokenValidator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# (method, URI) as WSGI environ keys, one pair per proxy.
NGINX = ("HTTP_X_ORIGINAL_METHOD", "HTTP_X_ORIGINAL_URI")
TRAEFIK = ("HTTP_X_FORWARDED_METHOD", "HTTP_X_FORWARDED_URI")


class DecisionApp:
    """Decide, at ``path``, whether the proxy may pass a request on.

    :param validator: asked about tokens no cache tier knows.
    :param cache: the cache tiers; a process-local one when omitted.
    :param policy: the rules deciding which requests need a token; every
        path when omitted.
    :param realm: the realm named in ``WWW-Authenticate`` challenges.
    :param headers: the names of the identity headers in the answer.
    :param path: where the proxy asks; any other path is 404.
    :param user_claims: the answer's claims tried in order for the user.

    ::

        app = DecisionApp(
            IntrospectionClient(url, client_id, secret),
            policy=InterceptPolicy([InterceptRule("/api/")]),
        )
    """

    def __init__(
        self,
        validator: TokenValidator,
        cache: TokenCache | None = None,
        *,
        policy: InterceptPolicy | None = None,
        realm: str = "oauth-tai",
        headers: IdentityHeaders | None = None,
        path: str = "/auth",
        user_claims: Sequence[str] = DEFAULT_USER_CLAIMS,
    ) -> None:
        self.headers = headers or IdentityHeaders()
        self.path = path
        self.middleware = TrustAssociationMiddleware(
            self._allow,
            validator,
            cache,
            realm=realm,
            policy=policy,
            identity_headers=self.headers.stripped,
            user_claims=user_claims,
        )

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path:
            return respond_json(start_response, 404, "not_found", f"ask at {self.path}")

        original = _original_request(environ)
        if original is None:
            INVALID_REQUESTS.inc()
            return respond_json(
                start_response,
                400,
                "invalid_request",
                "send the original method and URI in X-Original-Method and "
                "X-Original-URI, or X-Forwarded-Method and X-Forwarded-Uri",
            )

        # The middleware judges the original request: the same headers,
        # with the method, path and query the client sent to the proxy.
        method, path, query = original
        judged = dict(environ)
        judged.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query)
        return self.middleware(judged, start_response)

    def _allow(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        headers = [("Content-Length", "0"), ("Cache-Control", "no-store")]
        identity = get_identity(environ)
        if identity is not None:
            headers.extend(self.headers.render(identity))

        start_response("200 OK", headers)
        return []


def _original_request(environ: WSGIEnvironment) -> tuple[str, str, str] | None:
    """Return the original method, canonical path and query, or ``None``."""
    sent = [pair for pair in (NGINX, TRAEFIK) if any(k in environ for k in pair)]
    if len(sent) != 1:
        return None

    method_key, uri_key = sent[0]
    method = str(environ.get(method_key, "")).strip().upper()
    uri = str(environ.get(uri_key, "")).strip()
    if not method or not uri:
        return None

    # PEP 3333: header values and PATH_INFO hold bytes as latin-1
    # characters; PATH_INFO's are decoded, the form the policy matches.
    raw_path, _, query = uri.partition("#")[0].partition("?")
    decoded = unquote_to_bytes(raw_path.encode("latin-1", "replace"))
    path = canonical_path(decoded.decode("latin-1"))
    if path is None:
        return None

    return method, path, query
