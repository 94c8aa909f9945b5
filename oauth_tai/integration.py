"""Helpers for the application behind the middleware.

The middleware decides whether a request reaches the application at all;
these helpers let one handler ask more of the identity it was given: a
scope, or a user rather than a consumer acting alone. They read only the
identity the middleware verified (``oauth_tai.identity`` in the environ),
never a header, so a handler that no middleware guards refuses every
request with 401 instead of trusting one.

A decorated handler may be a WSGI application, a view that takes a request
with an ``environ`` (werkzeug, Django), or a Flask view, which takes none;
a refusal comes back in the same kind: a WSGI response, a werkzeug or
Django response.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from werkzeug.wrappers import Response

from oauth_tai.bearer import BearerError, InsufficientScope, MissingToken
from oauth_tai.identity import Identity, get_identity

# The middleware's own default, so that a decorator and the middleware in
# front of it name the same realm unless both are told otherwise.
DEFAULT_REALM = "oauth-tai"

P = ParamSpec("P")
R = TypeVar("R")


class HasEnviron(Protocol):
    """A request object that keeps its WSGI environ, as werkzeug's does."""

    @property
    def environ(self) -> Mapping[str, Any]: ...


def identity_of(request_or_environ: Mapping[str, Any] | HasEnviron) -> Identity | None:
    """Return the identity the middleware verified for this request, if any.

    Takes a WSGI environ or a request that keeps one in ``.environ``
    (werkzeug, Flask, Django); raises :class:`TypeError` for anything else.

    ::

        @app.get("/api/me")
        def me():
            identity = identity_of(request)
            return {"user": identity.user, "consumer": identity.consumer_id}
    """
    if isinstance(request_or_environ, Mapping):
        return get_identity(request_or_environ)

    environ = getattr(request_or_environ, "environ", None)
    if not isinstance(environ, Mapping):
        raise TypeError(f"not a WSGI environ nor a request: {request_or_environ!r}")

    return get_identity(environ)


def require_scopes(
    *scopes: str, realm: str = DEFAULT_REALM, user: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Refuse a request whose identity lacks one of ``scopes``.

    Without an identity the answer is 401 with a bare challenge (RFC 6750
    §3.1); with one that lacks a scope, 403 ``insufficient_scope`` naming
    the scopes needed (§3.1). Raises :class:`TypeError` at call time when
    the handler's arguments hold no request and no Flask request is active.

    :param realm: the realm of the challenge; the middleware's by default.
    :param user: also refuse, with 403, an identity with no user (a
        consumer acting for itself); :func:`require_user` says it shorter.

    ::

        @require_scopes("connections")
        def me(request):
            identity = identity_of(request)
            return Response(identity.user)
    """
    needed = frozenset(scopes)

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(handler)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            call = _Call.of(args)
            refusal = _refusal(get_identity(call.environ), needed, user)
            if refusal is None:
                return handler(*args, **kwargs)

            return cast(R, call.refuse(refusal, realm))

        return guarded

    return decorate


def require_user(
    *scopes: str, realm: str = DEFAULT_REALM
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Refuse a request whose identity has no user, or lacks one of ``scopes``.

    A consumer holding a token of its own (client credentials) acts for no
    user; a handler that reads or writes a user's data needs one, and
    refuses such an identity with 403 ``insufficient_scope``. Otherwise as
    :func:`require_scopes`.

    ::

        @require_user("connections")
        def post_status(request):
            ...
    """
    return require_scopes(*scopes, realm=realm, user=True)


def _refusal(
    identity: Identity | None, needed: frozenset[str], user: bool
) -> BearerError | None:
    # The same checks, in the same order, as an InterceptRule's.
    if identity is None:
        return MissingToken()

    if user and identity.user is None:
        return InsufficientScope("this resource acts for a user")

    if not identity.has_scopes(needed):
        scope = " ".join(sorted(needed))
        return InsufficientScope("the access token lacks a scope", scope)

    return None


class _Call:
    """Where a handler's request is, and how to answer it."""

    def __init__(
        self,
        environ: Mapping[str, Any],
        start_response: Callable[..., Any] | None = None,
        request: object = None,
    ) -> None:
        self.environ = environ
        self.start_response = start_response
        self.request = request

    @classmethod
    def of(cls, args: tuple[object, ...]) -> _Call:
        # A method's first argument is its instance, so every argument is
        # looked at, not only the first.
        for index, arg in enumerate(args):
            following = args[index + 1] if index + 1 < len(args) else None
            if isinstance(arg, dict) and callable(following):
                return cls(arg, start_response=following)

            environ = getattr(arg, "environ", None)
            if isinstance(environ, Mapping):
                return cls(environ, request=arg)

        flask = sys.modules.get("flask")
        if flask is not None and flask.has_request_context():
            return cls(flask.request.environ)

        raise TypeError("the handler was called without a request")

    def refuse(self, refusal: BearerError, realm: str) -> object:
        status_line, headers, payload = refusal.render(realm)
        status = refusal.status
        if self.start_response is not None:
            self.start_response(status_line, headers)
            return [payload]

        # Django is imported already if it made the request; looking it up
        # keeps Django out of this package's requirements.
        django_http = sys.modules.get("django.http")
        if django_http is not None and isinstance(
            self.request, django_http.HttpRequest
        ):
            response = django_http.HttpResponse(payload, status=status)
            for name, value in headers:
                response[name] = value
            return response

        return Response(payload, status=status, headers=headers)
