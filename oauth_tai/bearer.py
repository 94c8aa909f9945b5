"""Taking a bearer token from a request, and the challenges that refuse one.

RFC 6750 §2.1 fixes the header form ``Authorization: Bearer <token68>``;
the scheme is case-insensitive (RFC 9110 §11.1) and exactly one credential
may be sent. Each refusal is a :class:`BearerError` whose class attributes
are its wire format: status, error code and the ``WWW-Authenticate`` value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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

    def challenge(self, realm: str, scope: str | None = None) -> str:
        """Render the ``WWW-Authenticate`` header value for this refusal."""
        params = [("realm", realm)]
        if self.error:
            params.append(("error", self.error))
        if self.description:
            params.append(("error_description", self.description))
        if scope:
            params.append(("scope", scope))

        return "Bearer " + ", ".join(f"{k}={_quote(v)}" for k, v in params)


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


class ServiceUnavailable(BearerError):
    """The provider gave no answer; the consumer should retry, not re-auth."""

    status = 503
    error = "temporarily_unavailable"

    def __init__(self, description: str | None = None, retry_after: int = 5) -> None:
        super().__init__(description)
        self.retry_after = retry_after


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

    # RFC 9110 §5.5: only SP and HTAB around a field value are whitespace;
    # str.strip() would also drop CR, LF and other control characters.
    scheme, _, credential = values[0].strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        return None

    credential = credential.strip(" ")
    if not _TOKEN68.fullmatch(credential):
        raise InvalidRequest("the Authorization header is not one bearer token")

    return credential


def _quote(value: str) -> str:
    # RFC 9110 §5.6.4: a quoted-string escapes backslash and double quote;
    # control characters have no place in a header at all.
    cleaned = "".join(ch for ch in value if ch >= " " and ch != "\x7f")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'
