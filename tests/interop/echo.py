"""A WSGI app that echoes the identity the middleware gave it, behind it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from webtest import TestApp

from oauth_tai.cache import TokenCache
from oauth_tai.identity import get_identity
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.validators import TokenValidator


def echo_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    identity = get_identity(environ)
    body = json.dumps(
        {
            "user": environ.get("REMOTE_USER"),
            "auth_type": environ.get("AUTH_TYPE"),
            "consumer": identity.consumer_id if identity else None,
            "consumer_name": identity.consumer_name if identity else None,
            "scopes": sorted(identity.scopes) if identity else None,
        }
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def protect(validator: TokenValidator) -> TestApp:
    """The echo app behind the middleware, with an in-process cache."""
    cache = TokenCache(secrets.token_bytes(32))
    return TestApp(TrustAssociationMiddleware(echo_app, validator, cache))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class CountingValidator:
    """Pass every question to ``inner`` and count them."""

    def __init__(self, inner: TokenValidator) -> None:
        self.inner = inner
        self.calls = 0

    def introspect(self, token: str) -> Any:
        self.calls += 1
        return self.inner.introspect(token)
