"""Taking a bearer token from a request, and the challenges that refuse one.

RFC 6750 §2.1 fixes the header form ``Authorization: Bearer <token68>``;
the scheme is case-insensitive (RFC 9110 §11.1) and exactly one credential
may be sent. Each refusal is a :class:`BearerError` whose class attributes
are its wire format: status, error code and the ``WWW-Authenticate`` value.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    503: "Service Unavailable",
}

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
# "/" ) *"="
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class BearerError(Exception):
    """A refusal of a request at the resource server, per RFC 6750 §3.1."""

    status = 401
    error: str | None = None

    def __init__(self, description: str | None = None) -> None:
        super().__init__(description or self.error or "unauthorized")
        self.description = description

    def challenge(self, realm: str) -> str:
        """Render the ``WWW-Authenticate`` header value for this refusal."""
        scope = getattr(self, "scope", None)
        params = [("realm", realm)]
        if self.error:
            params.append(("error", self.error))
        if self.description:
            params.append(("error_description", self.description))
        if scope:
            params.append(("scope", scope))

        return "Bearer " + ", ".join(f"{k}={_quote(v)}" for k, v in params)

    def render(self, realm: str) -> tuple[str, list[tuple[str, str]], bytes]:
        """Return the status line, headers and JSON body of this refusal."""
        body = {"error": self.error or "unauthorized"}
        if self.description:
            body["error_description"] = self.description
        payload = json.dumps(body).encode()

        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
        ]
        headers.extend(self.extra_headers(realm))
        return f"{self.status} {_REASONS[self.status]}", headers, payload

    def extra_headers(self, realm: str) -> list[tuple[str, str]]:
        # RFC 6750 §3: every refusal of a token carries its challenge.
        return [("WWW-Authenticate", self.challenge(realm))]


class MissingToken(BearerError):
    """No credential was sent: RFC 6750 §3.1 says to send no error code."""


class InvalidRequest(BearerError):
    status = 400
    error = "invalid_request"


class InvalidToken(BearerError):
    error = "invalid_token"


class InsufficientScope(BearerError):
    status = 403
    error = "insufficient_scope"

    def __init__(self, description: str | None = None, scope: str | None = None):
        super().__init__(description)
        # RFC 6750 §3: the scope needed, so the consumer can ask for it.
        self.scope = scope


class ServiceUnavailable(BearerError):
    """The provider gave no answer; the consumer should retry, not re-auth."""

    status = 503
    error = "temporarily_unavailable"

    def __init__(self, description: str | None = None, retry_after: int = 5) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def extra_headers(self, realm: str) -> list[tuple[str, str]]:
        # Not a challenge: the token may be fine, so the consumer must not
        # be told to get a new one (RFC 9110 §10.2.3).
        return [("Retry-After", str(self.retry_after))]


def take_token(headers: Iterable[str]) -> str | None:
    """Return the bearer token from the request's Authorization header values.

    Returns ``None`` when no header was sent or it names another scheme, so
    that another authentication may take the request. Raises
    :class:`InvalidRequest` for two headers or a value that is not one
    token68 credential.
    """
    values = list(headers)
    if not values:
        return None

    if len(values) > 1:
        raise InvalidRequest("more than one Authorization header")

    credential = take_header_token({"HTTP_AUTHORIZATION": values[0]})
    if credential is not None:
        check_token(credential)
    return credential


def check_token(token: str) -> None:
    """Raise :class:`InvalidRequest` unless ``token`` is one token68 credential."""
    if not _TOKEN68.fullmatch(token):
        raise InvalidRequest("the Authorization header is not one bearer token")


def take_header_token(environ: dict[str, Any]) -> str | None:
    """Return the Authorization header's bearer credential, unchecked.

    The fast way for a caller that takes the token from the header only
    and calls :func:`check_token` when its cache does not know the token.
    """
    header: str | None = environ.get("HTTP_AUTHORIZATION")
    if header is None:
        return None

    # RFC 9110 §5.5: only SP and HTAB around a field value are whitespace;
    # str.strip() would also drop CR, LF and other control characters.
    scheme, _, credential = header.strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip(" ")


def _quote(value: str) -> str:
    # RFC 9110 §5.6.4: a quoted-string escapes backslash and double quote;
    # control characters have no place in a header at all.
    cleaned = "".join(ch for ch in value if ch >= " " and ch != "\x7f")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


# RFC 6750 §2.2 allows the token in a form body; a body larger than this is
# not a form a consumer sends to carry a token, so it is not read.
MAX_FORM_BYTES = 1 << 20


def take_request_token(
    environ: dict[str, Any],
    *,
    allow_body: bool = False,
    allow_query: bool = False,
    check: bool = True,
) -> str | None:
    """Return the bearer token of a WSGI request, wherever it is allowed.

    The Authorization header always counts; the ``access_token`` form field
    (RFC 6750 §2.2) and query parameter (§2.3) only when enabled. Raises
    :class:`InvalidRequest` when more than one credential was sent (§2).

    :param check: check the header's credential is token68 syntax. A
        caller that looks tokens up in a cache first may pass ``False`` and
        call :func:`check_token` on a miss: a token found in the cache was
        checked when its answer was cached.
    """
    token = take_header_token(environ)
    if token is not None and check:
        check_token(token)
    if not (allow_query or allow_body):
        return token

    found = [] if token is None else [token]

    if allow_query and "access_token" in environ.get("QUERY_STRING", ""):
        found.extend(_field(environ.get("QUERY_STRING", ""), "access_token"))

    if allow_body and _is_form_post(environ):
        found.extend(_field(_read_body(environ), "access_token"))

    if len(found) > 1:
        raise InvalidRequest("more than one access token in the request")

    return found[0] if found else None


def _field(encoded: str, name: str) -> list[str]:
    values = parse_qs(encoded, keep_blank_values=True).get(name, [])
    for value in values:
        if not _TOKEN68.fullmatch(value):
            raise InvalidRequest("the access_token field is not one bearer token")
    return values


def _is_form_post(environ: dict[str, Any]) -> bool:
    # §2.2: only a single-part form body, and never with GET.
    content_type = str(environ.get("CONTENT_TYPE", ""))
    media_type = content_type.split(";", 1)[0].strip().lower()
    return (
        environ.get("REQUEST_METHOD", "GET") != "GET"
        and media_type == "application/x-www-form-urlencoded"
    )


def _read_body(environ: dict[str, Any]) -> str:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return ""
    if length <= 0 or length > MAX_FORM_BYTES:
        return ""

    body: bytes = environ["wsgi.input"].read(length)
    # The application behind reads the same body: hand it a fresh stream.
    environ["wsgi.input"] = io.BytesIO(body)
    return body.decode("latin-1")
