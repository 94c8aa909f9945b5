"""The reverse proxy: forward every request the middleware lets through.

Use it when the upstream is reached through the gateway alone. Each
request is judged by :class:`TrustAssociationMiddleware` on its canonical
path; what it lets through is forwarded to the upstream with the verified
identity in the identity headers, and what it refuses never reaches the
upstream. Bodies stream both ways in pieces; neither is held whole.

What the upstream may trust: the identity headers, which the gateway
removes from every client request (whatever their spelling) before adding
its own, and ``X-Forwarded-Proto`` and ``X-Forwarded-Host``, which it
sets. ``X-Forwarded-For`` is the client's list with the client's address
appended; only that last entry is the gateway's. The gateway does not
forward protocol upgrades (WebSocket): ``Upgrade`` ends at this hop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Final
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.util import SKIP_HEADER

from oauth_tai.cache import TokenCache
from oauth_tai.errors import ConfigurationError
from oauth_tai.gateway.wire import (
    IdentityHeaders,
    canonical_path,
    ends_here,
    is_hop_by_hop,
    respond_json,
)
from oauth_tai.identity import DEFAULT_USER_CLAIMS, get_identity
from oauth_tai.metrics import INVALID_REQUESTS
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.rules import InterceptPolicy
from oauth_tai.validators import TokenValidator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

# Bodies move in pieces of this size: few system calls per megabyte, and
# little memory held per request in flight.
CHUNK_BYTES: Final = 64 * 1024

# One pooled connection per serving thread, roughly; more only holds
# sockets open on the upstream.
POOL_SIZE: Final = 20

CONNECT_TIMEOUT: Final = 5.0

# Some answers take long (reports, long polls); a stuck upstream must still
# free the serving thread in the end.
READ_TIMEOUT: Final = 300.0

# The path the proxy forwards when it differs from PATH_INFO, the one the
# policy judged: the same path with its ;parameters.
UPSTREAM_PATH: Final = "oauth_tai.gateway.upstream_path"

# Characters left as they are when a decoded path is encoded again.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

# Expect is answered by the server in front of this app (it has sent 100
# Continue, or the client sent the body anyway); the body is forwarded
# whole either way.
_NOT_FORWARDED = frozenset(
    {"host", "expect", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-for"}
)

# The WSGI server writes these on every response itself.
_SERVER_WRITES = frozenset({"date", "server"})


def protect_upstream(
    upstream: str,
    validator: TokenValidator,
    cache: TokenCache | None = None,
    *,
    policy: InterceptPolicy | None = None,
    realm: str = "oauth-tai",
    headers: IdentityHeaders | None = None,
    hide_token: bool = False,
    user_claims: Sequence[str] = DEFAULT_USER_CLAIMS,
) -> WSGIApplication:
    """Return the WSGI app that judges each request and forwards it upstream.

    Raises :class:`ConfigurationError` for an unusable upstream URL. The
    parameters are those of :class:`ReverseProxy` and
    :class:`~oauth_tai.gateway.DecisionApp`.
    """
    headers = headers or IdentityHeaders()
    proxy = ReverseProxy(upstream, headers=headers, hide_token=hide_token)
    guarded = TrustAssociationMiddleware(
        proxy,
        validator,
        cache,
        realm=realm,
        policy=policy,
        identity_headers=headers.stripped,
        user_claims=user_claims,
    )
    return CanonicalRequest(guarded)


class CanonicalRequest:
    """Resolve dot and empty path segments and upper-case the method.

    The policy then judges the request as the strictest upstream reads it,
    without its ``;parameters``, and the proxy forwards the same path with
    them (in :data:`UPSTREAM_PATH`). A path that does not start with
    ``/``, or that upstreams would read differently, gets 400.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        sent = environ.get("PATH_INFO") or "/"
        path = canonical_path(sent)
        forwarded = canonical_path(sent, keep_parameters=True)
        if path is None or forwarded is None:
            INVALID_REQUESTS.inc()
            return respond_json(
                start_response,
                400,
                "invalid_request",
                "the path is not absolute, holds a backslash or control "
                "character, or has ;parameters that upstreams read differently",
            )

        environ["PATH_INFO"] = path
        environ[UPSTREAM_PATH] = forwarded
        environ["REQUEST_METHOD"] = str(environ.get("REQUEST_METHOD", "GET")).upper()
        return self.app(environ, start_response)


class ReverseProxy:
    """Forward each request to ``upstream``, with the identity in headers.

    Put it behind :class:`TrustAssociationMiddleware` (as
    :func:`protect_upstream` does); on its own it forwards requests with
    no identity, the client's identity headers still removed. An upstream
    that cannot be reached gives 502.

    :param upstream: the upstream's base URL, ``http`` or ``https``; a path
        in it is put before every request's path.
    :param headers: the names of the identity headers.
    :param hide_token: drop a bearer Authorization header, so that the
        upstream sees the identity but never the token.
    """

    def __init__(
        self,
        upstream: str,
        *,
        headers: IdentityHeaders | None = None,
        hide_token: bool = False,
    ) -> None:
        self.origin, self.base_path = split_upstream(upstream)
        self.headers = headers or IdentityHeaders()
        self.hide_token = hide_token
        self._stripped = frozenset(name.lower() for name in self.headers.stripped)
        self._pool = urllib3.PoolManager(
            maxsize=POOL_SIZE,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            retries=False,
        )

    def __repr__(self) -> str:
        return f"ReverseProxy({self.origin + self.base_path!r})"

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        try:
            body, chunked = _request_body(environ)
        except ValueError:
            return respond_json(
                start_response, 400, "invalid_request", "bad Content-Length"
            )

        sent = environ.get(UPSTREAM_PATH) or environ.get("PATH_INFO") or "/"
        path = quote(str(sent).encode("latin-1"), _PATH_SAFE)
        query = environ.get("QUERY_STRING", "")
        url = self.origin + self.base_path + path + (f"?{query}" if query else "")
        headers = self._request_headers(environ)
        identity = get_identity(environ)
        if identity is not None:
            headers.update(self.headers.render(identity))

        try:
            response = self._pool.urlopen(
                environ["REQUEST_METHOD"],
                url,
                body=body,
                headers=headers,
                chunked=chunked,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            logger.warning("upstream %s failed: %s", self.origin, exc)
            return respond_json(
                start_response, 502, "bad_gateway", "the upstream cannot be reached"
            )

        status = f"{response.status} {response.reason or ''}".rstrip()
        start_response(status, self._response_headers(response))
        return _stream(response)

    def _request_headers(self, environ: WSGIEnvironment) -> dict[str, str]:
        ending = ends_here(environ.get("HTTP_CONNECTION"))
        headers: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                name = key.replace("_", "-").title()
            else:
                continue

            lowered = name.lower()
            if (
                is_hop_by_hop(name, ending)
                or lowered in self._stripped
                or lowered in _NOT_FORWARDED
            ):
                continue
            if lowered == "authorization" and self.hide_token and _is_bearer(value):
                continue
            headers[name] = value

        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        client = environ.get("REMOTE_ADDR", "")
        headers["X-Forwarded-For"] = (
            f"{forwarded_for}, {client}" if forwarded_for else client
        )
        headers["X-Forwarded-Proto"] = environ.get("wsgi.url_scheme", "http")
        if "HTTP_HOST" in environ:
            headers["X-Forwarded-Host"] = environ["HTTP_HOST"]

        # Without these urllib3 would add its own User-Agent and ask for
        # an encoding the client never asked for.
        headers.setdefault("User-Agent", SKIP_HEADER)
        headers.setdefault("Accept-Encoding", SKIP_HEADER)
        return headers

    def _response_headers(
        self, response: urllib3.BaseHTTPResponse
    ) -> list[tuple[str, str]]:
        ending = ends_here(response.headers.get("Connection"))
        return [
            (name, value)
            for name, value in response.headers.items()
            if not is_hop_by_hop(name, ending) and name.lower() not in _SERVER_WRITES
        ]


def split_upstream(upstream: str) -> tuple[str, str]:
    """Return the upstream's origin and base path; raise if it is unusable."""
    problem = (
        "the upstream must be an http(s) URL such as http://127.0.0.1:9000, "
        f"not {upstream!r}"
    )
    try:
        parts = urlsplit(upstream)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(problem) from exc

    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(problem)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(problem + " (no query, fragment or user)")

    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return origin, parts.path.rstrip("/")


def _request_body(environ: WSGIEnvironment) -> tuple[Iterator[bytes] | None, bool]:
    """Return the request body as pieces, and whether to send it chunked.

    Raises :class:`ValueError` for a Content-Length that is not a count.
    """
    stream: IO[bytes] = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH")
    if declared:
        length = int(declared)
        if length < 0:
            raise ValueError(declared)
        return (_read_exactly(stream, length) if length else None), False

    # A chunked request has no length: the server de-chunks it and marks
    # the input as ending by itself (the wsgi.input_terminated extension).
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if chunked and environ.get("wsgi.input_terminated"):
        return _read_to_end(stream), True

    return None, False


def _read_exactly(stream: IO[bytes], length: int) -> Iterator[bytes]:
    # The server's input may be the raw socket: reading past the declared
    # length would wait for bytes the client never sends.
    left = length
    while left > 0:
        piece = stream.read(min(left, CHUNK_BYTES))
        if not piece:
            return
        left -= len(piece)
        yield piece


def _read_to_end(stream: IO[bytes]) -> Iterator[bytes]:
    while piece := stream.read(CHUNK_BYTES):
        yield piece


def _stream(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    finished = False
    try:
        yield from response.stream(CHUNK_BYTES, decode_content=False)
        finished = True
    except urllib3.exceptions.HTTPError as exc:
        # The status is sent already: the client sees a short body.
        logger.warning("the upstream's answer broke off: %s", exc)
    finally:
        # A connection with an unread answer on it cannot serve another
        # request; it is closed rather than put back in the pool.
        if not finished:
            response.close()
        response.release_conn()


def _is_bearer(value: str) -> bool:
    return value.strip(" \t")[:7].lower() == "bearer "
