"""Explaining what the middleware decides for a token: ``oauth-tai check-token``.

An administrator hands over a token (on standard input or in a file,
never as an argument, which other users could read in the process list)
and learns, for a path and method, which rule intercepts the request,
which tier answered about the token, the identity and expiry it stands
for, and whether the request would pass or be refused and why. The token
itself is never printed: the report names it by the short hash the logs
use.

The request is judged by a real :class:`TrustAssociationMiddleware`,
built from the settings as ``serve`` (or, with prefixes, ``gateway``)
builds it, so the report cannot differ from what a server decides. It
asks exactly as a request would: an answer the provider gives is cached
like any other.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from oauth_tai.bearer import BearerError
from oauth_tai.cache import Miss, TokenCache
from oauth_tai.gateway.serving import gateway_policy
from oauth_tai.identity import Identity, get_identity
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.rules import InterceptPolicy, InterceptRule
from oauth_tai.settings import Settings
from oauth_tai.system import (
    CONNECTIONS_POLICY,
    build_cache,
    build_validator,
    open_provider,
)
from oauth_tai.validators import TokenValidator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# The tiers that can answer about a token.
TIER_L1 = "l1"
TIER_L2 = "l2"
TIER_PROVIDER = "provider"


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the middleware decided about one request, and why.

    ``decision`` is ``allowed`` (a valid token), ``passed`` (no rule asked
    for a token) or ``refused``; ``tier`` is ``None`` when no tier was
    asked because no rule intercepted the request.
    """

    method: str
    path: str
    rule: InterceptRule | None
    rule_number: int | None
    tier: str | None
    source: str
    identity: Identity | None
    decision: str
    status: int
    error: str | None
    description: str | None

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """Return the explanation as JSON-ready data."""
        identity = None
        if self.identity is not None:
            identity = {
                "user": self.identity.user,
                "consumer_id": self.identity.consumer_id,
                "consumer_name": self.identity.consumer_name,
                "scopes": sorted(self.identity.scopes),
                "audiences": sorted(self.identity.audiences),
                "expires_at": _iso(self.identity.expires_at),
                "expires_in": int(self.identity.expires_at - (now or time.time())),
                "token_hash": self.identity.token_hash,
            }
        rule = None
        if self.rule is not None:
            rule = {
                "number": self.rule_number,
                **asdict(self.rule),
                "methods": sorted(self.rule.methods),
                "scopes": sorted(self.rule.scopes),
            }
            rule.pop("_regex", None)
        return {
            "method": self.method,
            "path": self.path,
            "rule": rule,
            "tier": self.tier,
            "source": self.source,
            "identity": identity,
            "decision": self.decision,
            "status": self.status,
            "error": self.error,
            "error_description": self.description,
        }

    def to_text(self, now: float | None = None) -> str:
        """Return the explanation as lines for a person."""
        lines = [f"{self.method} {self.path}"]
        if self.rule is None:
            lines.append("  rule:     none intercepts this request")
        else:
            lines.append(f"  rule:     #{self.rule_number}, {_describe(self.rule)}")

        if self.tier is not None:
            lines.append(f"  answered: {_tier_text(self.tier, self.source)}")

        identity = self.identity
        if identity is not None:
            left = int(identity.expires_at - (now or time.time()))
            lines += [
                f"  user:     {identity.user or '(none: the consumer acts alone)'}",
                f"  consumer: {identity.consumer_id} ({identity.consumer_name})",
                f"  scopes:   {' '.join(sorted(identity.scopes)) or '(none)'}",
                f"  expires:  {_iso(identity.expires_at)} ({_duration(left)})",
                f"  token:    {identity.token_hash} (its hash in the logs)",
            ]

        if self.decision == "allowed":
            verdict = f"allowed ({self.status}): the application sees the identity"
        elif self.decision == "passed":
            verdict = f"passed ({self.status}): the application sees no identity"
        else:
            verdict = f"refused ({self.status} {self.error or 'without a code'})"
            if self.description:
                verdict += f": {self.description}"
        lines.append(f"decision: {verdict}")
        return "\n".join(lines)


class TokenChecker:
    """A middleware as a server builds it, behind an app that only listens.

    :param validator: asked about tokens no cache tier knows.
    :param cache: the cache tiers, Redis among them when configured.
    :param policy: the rules deciding which requests need a token.
    :param realm: the realm of the middleware's challenges.
    :param source: a few words naming the provider, for the report.
    """

    def __init__(
        self,
        validator: TokenValidator,
        cache: TokenCache,
        policy: InterceptPolicy,
        *,
        realm: str = "oauth-tai",
        source: str = "the provider",
    ) -> None:
        self._recorder = _Recorder()
        self.middleware = TrustAssociationMiddleware(
            self._recorder.app, validator, cache, realm=realm, policy=policy
        )
        self.cache = cache
        self.source = source

    def explain(self, token: str, path: str, method: str = "GET") -> Explanation:
        """Judge a request for ``path`` carrying ``token``; tell what and why."""
        method = method.upper()
        middleware = self.middleware
        rule = middleware.policy.match(path, method)
        rule_number = tier = None
        if rule is not None:
            rule_number = middleware.policy.rules.index(rule) + 1
            tier = _answering_tier(self.cache, token)

        status_line, body = self._recorder.run(
            middleware, _request(token, path, method)
        )
        status = int(status_line.split(" ", 1)[0])
        identity = self._recorder.identity
        error = description = None
        if status == 200:
            decision = "allowed" if identity is not None else "passed"
        else:
            decision = "refused"
            error, description = _error_of(body)
            if tier is not None:
                identity = _resolved(middleware, token)

        return Explanation(
            method=method,
            path=path,
            rule=rule,
            rule_number=rule_number,
            tier=tier,
            source=self.source,
            identity=identity,
            decision=decision,
            status=status,
            error=error,
            description=description,
        )


def checker_for(
    settings: Settings, prefixes: Sequence[str] = (), exclude: Sequence[str] = ()
) -> TokenChecker:
    """Build the checker the settings describe.

    The provider, the cache tiers and the realm are those of the settings;
    the rules are the gateway's for ``prefixes`` and ``exclude``, or
    ``serve``'s without either.
    """
    remote = bool(settings.introspection_url or settings.jwks_url)
    provider = None if remote else open_provider(settings)
    return TokenChecker(
        build_validator(settings, provider),
        build_cache(settings),
        policy_for(prefixes, exclude),
        realm=settings.realm,
        source=describe_source(settings),
    )


def policy_for(prefixes: Sequence[str], exclude: Sequence[str]) -> InterceptPolicy:
    """The gateway's policy for these prefixes, or ``serve``'s without any."""
    if not prefixes and not exclude:
        return CONNECTIONS_POLICY
    return gateway_policy(prefixes, exclude)


def describe_source(settings: Settings) -> str:
    """Name the provider the settings trust, without any credential."""
    if settings.jwks_url:
        return f"JWT checked with the JWKS at {settings.jwks_url}"
    if settings.introspection_url:
        return f"introspection at {settings.introspection_url}"
    return "the provider's token store in the database"


def read_token(text: str) -> str | None:
    """Return the token in what an administrator pasted, or ``None``.

    Surrounding blanks and a ``Bearer`` prefix (a copied header value) are
    dropped. More than one word is not a token.
    """
    words = text.split()
    if words and words[0].lower() == "bearer":
        words = words[1:]
    return words[0] if len(words) == 1 else None


def _answering_tier(cache: TokenCache, token: str) -> str:
    # The tier that holds an answer now gives it to the request. L1 is
    # asked alone first; asking both then tells whether L2 holds one.
    key = cache.key(token)
    if not isinstance(cache.get_local(key), Miss):
        return TIER_L1
    if not isinstance(cache.get(key), Miss):
        return TIER_L2
    return TIER_PROVIDER


def _resolved(middleware: TrustAssociationMiddleware, token: str) -> Identity | None:
    # A rule may refuse a valid token (scope, audience, user): its identity
    # is still worth showing. resolve() answers from L1 by now.
    try:
        return middleware.resolve(token)
    except BearerError:
        return None


def _request(token: str, path: str, method: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "check-token",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": True,
    }


class _Recorder:
    """The app behind the middleware: it notes the identity and says 200."""

    def __init__(self) -> None:
        self.identity: Identity | None = None
        self.status = ""

    def app(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        self.identity = get_identity(environ)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    def run(
        self, middleware: TrustAssociationMiddleware, environ: dict[str, Any]
    ) -> tuple[str, bytes]:
        """Send one request through; return its status line and body."""
        self.identity = None

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            self.status = status
            return lambda data: None

        body = b"".join(middleware(environ, start_response))
        return self.status, body


def _error_of(body: bytes) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None

    error = data.get("error")
    description = data.get("error_description")
    return (
        error if isinstance(error, str) and error != "unauthorized" else None,
        description if isinstance(description, str) else None,
    )


def _describe(rule: InterceptRule) -> str:
    parts = [f"paths under {rule.prefix}"]
    if rule.pattern is not None:
        parts.append(f"matching {rule.pattern}")
    if rule.methods:
        parts.append(f"methods {', '.join(sorted(rule.methods))}")
    parts.append("a token is required" if rule.oauth_only else "a token is optional")
    if rule.scopes:
        parts.append(f"scopes {rule.scope}")
    if rule.require_user:
        parts.append("a user is required")
    if rule.audience is not None:
        parts.append(f"audience {rule.audience}")
    return "; ".join(parts)


def _tier_text(tier: str, source: str) -> str:
    if tier == TIER_L2:
        return "L2, the shared Redis cache"
    if tier == TIER_L1:
        return "L1, this process's cache"
    return f"the provider: {source}"


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: int) -> str:
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"in {hours} h {minutes} min"
    return f"in {minutes} min {rest % 60} s"
