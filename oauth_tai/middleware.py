"""The trust association interceptor, as WSGI middleware.

Use it in front of any WSGI application whose API is called by consumers
(third-party applications) with OAuth 2.0 bearer tokens. For each request
whose path it intercepts, it takes the bearer token from the Authorization
header, resolves it through the cache tiers to the provider's answer, and
only then calls the application, with ``REMOTE_USER``, ``AUTH_TYPE`` and
``oauth_tai.identity`` set to the user who granted access and the consumer
holding the token.

What it trusts: the provider's answer (the in-process token store or an
RFC 7662 endpoint), and cache entries it or a sibling process wrote under
the shared secret. What it ignores: any ``REMOTE_USER`` already in the
environ and any identity a client claims. A request without a valid token
never reaches the application on an intercepted path; when the provider
cannot answer, the consumer gets 503 and keeps its token.

How it behaves when a part fails: concurrent requests with one uncached
token make one provider call (:mod:`oauth_tai.flight`, and across
processes :meth:`TokenCache.claim`); a provider that keeps failing is left
alone by a circuit breaker (:mod:`oauth_tai.breaker`), while tokens it
vouched for recently keep working for the cache's ``max_stale``; Redis
failing costs L2 and nothing else (:mod:`oauth_tai.redis_guard`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from oauth_tai.audit import BY_CONSUMER, audit
from oauth_tai.bearer import (
    BearerError,
    InvalidToken,
    MissingToken,
    ServiceUnavailable,
    check_token,
    take_header_token,
    take_request_token,
)
from oauth_tai.breaker import CircuitBreaker
from oauth_tai.cache import LOG_HASH_CHARS, Miss, TokenCache
from oauth_tai.errors import ProviderUnavailable
from oauth_tai.flight import SingleFlight
from oauth_tai.identity import (
    DEFAULT_USER_CLAIMS,
    ENVIRON_KEY,
    IDENTITY_HEADERS,
    Identity,
    identity_from_answer,
)
from oauth_tai.metrics import (
    ALLOWED_BY_TOKEN,
    PASSED_UNINTERCEPTED,
    PASSED_WITHOUT_TOKEN,
    PROVIDER_ANSWERS,
    REFUSED_BY_ERROR,
)
from oauth_tai.rules import InterceptPolicy, InterceptRule
from oauth_tai.validators import TokenValidator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

# Where report-only mode keeps, for one request, the tier that answered.
TIER_KEY = "oauth_tai.report_tier"


@dataclass(frozen=True, slots=True)
class _Outage:
    """No answer: the provider failed, or the breaker kept us from asking."""

    reason: str
    retry_after: int


_Answer = Identity | None | _Outage


class TrustAssociationMiddleware:
    """Authenticate bearer-token requests before they reach ``app``.

    :param app: the WSGI application to protect.
    :param validator: asked about tokens no cache tier knows (see
        :mod:`oauth_tai.validators`).
    :param cache: the cache tiers; a process-local one when omitted.
    :param realm: the realm named in ``WWW-Authenticate`` challenges.
    :param prefixes: shorthand for one token-only rule per URL prefix.
    :param policy: the rules deciding which requests are intercepted and
        what their tokens must carry (see :mod:`oauth_tai.rules`); it
        replaces ``prefixes``.
    :param allow_body_token: also take ``access_token`` from a form body.
    :param allow_query_token: also take ``access_token`` from the query
        string; off by default, as URLs end up in logs and histories.
    :param identity_headers: header names that carry an identity to
        upstream services; a client's copies are removed from every
        request, intercepted or not.
    :param user_claims: the answer's claims tried in order for the user.
    :param report_only: decide and log every request, but block none: a
        refused request reaches the app without an identity, so the
        middleware can run beside another gateway before it takes over.
    :param breaker: the circuit breaker in front of ``validator``; one with
        the default thresholds when omitted.

    ::

        app = TrustAssociationMiddleware(
            app, IntrospectionClient(url, client_id, secret),
            policy=InterceptPolicy([
                InterceptRule("/api/admin/", scopes=frozenset({"admin"})),
                InterceptRule("/api/"),
                InterceptRule("/pages/", oauth_only=False),
            ]),
        )
    """

    def __init__(
        self,
        app: WSGIApplication,
        validator: TokenValidator,
        cache: TokenCache | None = None,
        *,
        realm: str = "oauth-tai",
        prefixes: Iterable[str] = ("/",),
        policy: InterceptPolicy | None = None,
        allow_body_token: bool = False,
        allow_query_token: bool = False,
        identity_headers: Iterable[str] = IDENTITY_HEADERS,
        user_claims: Sequence[str] = DEFAULT_USER_CLAIMS,
        report_only: bool = False,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.app = app
        self.validator = validator
        self.cache = cache if cache is not None else TokenCache(_process_secret())
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.flights = SingleFlight[_Answer]()
        self.realm = realm
        self.policy = policy or InterceptPolicy.for_prefixes(prefixes)
        self.user_claims = tuple(user_claims)
        self.report_only = report_only
        # Tokens are checked for syntax on a cache miss only (see resolve).
        self._take_token: Callable[[WSGIEnvironment], str | None] = (
            partial(
                take_request_token,
                allow_body=allow_body_token,
                allow_query=allow_query_token,
                check=False,
            )
            if allow_body_token or allow_query_token
            else take_header_token
        )
        # Servers turn both "X-Auth-User" and "X_Auth_User" into the same
        # environ key, so one key per name covers every spelling.
        spoofable = (
            "HTTP_" + name.upper().replace("-", "_") for name in identity_headers
        )
        # Dropped from every request: a client's identity headers, and an
        # identity some other layer may have left in the environ.
        self._scrubbed = frozenset((ENVIRON_KEY, *spoofable))

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        drop = environ.pop
        # One look for all of them: a request rarely carries any.
        if not environ.keys().isdisjoint(self._scrubbed):
            for key in self._scrubbed:
                drop(key, None)

        rule = self.policy.match(
            environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        )
        if rule is None:
            PASSED_UNINTERCEPTED.inc()
            return self.app(environ, start_response)

        token: str | None = None
        identity: Identity | None = None
        try:
            token = self._take_token(environ)
            if token is None and not rule.oauth_only:
                PASSED_WITHOUT_TOKEN.inc()
                return self.app(environ, start_response)

            if token is None:
                raise MissingToken()

            if self.report_only:
                environ[TIER_KEY] = self._tier(token)
            identity = self.resolve(token)
            if rule.demands:
                rule.check(identity)
        except BearerError as refusal:
            REFUSED_BY_ERROR[refusal.error].inc()
            self._record_refusal(environ, refusal, token, identity, rule)
            # Neither the app (report-only) nor a layer around this one
            # may take another layer's user for this request's.
            drop("REMOTE_USER", None)
            drop("AUTH_TYPE", None)
            if self.report_only:
                return self.app(environ, start_response)
            return self._refuse(refusal, start_response)

        ALLOWED_BY_TOKEN.inc()
        if self.report_only:
            logger.info(
                "report-only: would allow %s %s (rule %s, answered by %s)",
                environ.get("REQUEST_METHOD", "GET"),
                environ.get("PATH_INFO", ""),
                rule.prefix,
                environ.pop(TIER_KEY, "provider"),
            )
        # Whatever another layer left in these is replaced, or dropped.
        if identity.user is not None:
            environ["REMOTE_USER"] = identity.user
        else:
            drop("REMOTE_USER", None)
        environ["AUTH_TYPE"] = "Bearer"
        environ[ENVIRON_KEY] = identity
        return self.app(environ, start_response)

    def _record_refusal(
        self,
        environ: WSGIEnvironment,
        refusal: BearerError,
        token: str | None,
        identity: Identity | None,
        rule: InterceptRule,
    ) -> None:
        # Refusals are what a security team asks about later; the token
        # appears only as the short keyed hash the cache uses.
        details: dict[str, str | bool] = {}
        if self.report_only:
            details = {"report_only": True, "tier": str(environ.pop(TIER_KEY, ""))}
        audit(
            "request_refused",
            by=BY_CONSUMER,
            user=None if identity is None else identity.user,
            consumer=None if identity is None else identity.consumer_id,
            token=None if token is None else self.cache.key(token)[:LOG_HASH_CHARS],
            reason=refusal.error or "missing_token",
            rule=rule.pattern or rule.prefix,
            method=str(environ.get("REQUEST_METHOD", "GET")),
            path=str(environ.get("PATH_INFO", "")),
            **details,
        )

    def _tier(self, token: str) -> str:
        # Report-only mode says which tier would answer; the extra lookups
        # are paid only there.
        key = self.cache.key(token)
        if not isinstance(self.cache.get_local(key), Miss):
            return "l1"
        return "l2" if not isinstance(self.cache.get(key), Miss) else "provider"

    def resolve(self, token: str) -> Identity:
        """Return the identity behind ``token``.

        Raises :class:`InvalidToken` for a token that is unknown, revoked
        or expired, and :class:`ServiceUnavailable` when the provider could
        not answer and no tier holds an answer.
        """
        key = self.cache.key(token)
        cached = self.cache.get(key)
        # No second look at the expiry: no tier holds an answer fresh past
        # its token's expiry (TokenCache.put), and both compare with now.
        if isinstance(cached, Identity):
            return cached
        return self._answer(token, key, cached)

    def _answer(self, token: str, key: str, cached: None | Miss) -> Identity:
        # What the tiers held was no identity: a miss, or a refusal.
        if isinstance(cached, Miss):
            # Only checked tokens get cached answers, so a hit needs no check.
            check_token(token)
            answer = self.flights.run(key, partial(self._fetch, token, key))
            if isinstance(answer, _Outage):
                raise ServiceUnavailable(
                    "the provider cannot be reached", answer.retry_after
                )
            if answer is not None:
                return answer

        logger.debug("refused token %s: not active", key[:LOG_HASH_CHARS])
        raise InvalidToken("the access token is not active")

    def _fetch(self, token: str, key: str) -> _Answer:
        # The flight before this one may have answered since our miss.
        cached = self.cache.get_local(key)
        if not isinstance(cached, Miss):
            return cached

        epoch = self.cache.epoch
        with self.cache.claim(key) as answered:
            if not isinstance(answered, Miss):
                return answered

            return self._ask_provider(token, key, epoch)

    def _ask_provider(self, token: str, key: str, epoch: int) -> _Answer:
        if not self.breaker.allow():
            return self._fall_back(key, "circuit open", self.breaker.retry_after())

        try:
            answer = self.validator.introspect(token)
        except ProviderUnavailable as exc:
            self.breaker.record_failure(exc.reason)
            return self._fall_back(key, exc.reason, exc.retry_after)

        self.breaker.record_success()
        PROVIDER_ANSWERS.inc()
        if answer is None:
            self.cache.put(key, None, epoch=epoch)
            return None

        identity = identity_from_answer(answer, key[:LOG_HASH_CHARS], self.user_claims)
        if identity is None:
            # An active answer we cannot read is the provider's fault;
            # the token is refused rather than half-trusted.
            logger.warning(
                "unreadable active answer from the provider for token %s",
                key[:LOG_HASH_CHARS],
            )

        if identity is not None and identity.expires_at <= time.time():
            # "Active" but already expired: the provider's clock or ours is
            # off; the token is refused, and put() would not keep it anyway.
            logger.debug("refused token %s: expired", key[:LOG_HASH_CHARS])
            identity = None

        claimed = answer.get("jti")
        jti = claimed if isinstance(claimed, str) and claimed else None
        if identity is not None and jti is not None and self.cache.jti_revoked(jti):
            logger.debug("refused token %s: its jti was revoked", key[:LOG_HASH_CHARS])
            identity = None

        self.cache.put(key, identity, jti=jti, epoch=epoch)
        return identity

    def _fall_back(self, key: str, reason: str, retry_after: int) -> _Answer:
        stale = self.cache.get_stale(key)
        if stale is not None:
            logger.debug(
                "provider unavailable (%s): token %s answered from a stale entry",
                reason,
                key[:LOG_HASH_CHARS],
            )
            return stale

        logger.debug(
            "provider unavailable (%s): token %s refused with 503",
            reason,
            key[:LOG_HASH_CHARS],
        )
        return _Outage(reason, retry_after)

    def _refuse(
        self, refusal: BearerError, start_response: StartResponse
    ) -> Iterable[bytes]:
        status, headers, payload = refusal.render(self.realm)
        start_response(status, headers)
        return [payload]


def _process_secret() -> bytes:
    # Without a configured secret the cache is private to this process, so a
    # random key is as good as any and keeps hashes unguessable.
    return secrets.token_bytes(32)
