"""Assembling the parts from settings: what ``oauth-tai serve`` runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from oauth_tai.breaker import CircuitBreaker
from oauth_tai.cache import LOG_HASH_CHARS, TokenCache
from oauth_tai.connections.app import ConnectionsApp
from oauth_tai.connections.entries import EntryStore
from oauth_tai.database import open_database
from oauth_tai.errors import ConfigurationError
from oauth_tai.health import with_operations
from oauth_tai.metrics import FEED_RECEIVED, REVOCATIONS_SENT
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.provider.access import PAGE_PATH as ACCESS_PAGE
from oauth_tai.provider.app import ProviderApp
from oauth_tai.provider.registry import ClientRegistry
from oauth_tai.provider.server import ProviderServer
from oauth_tai.provider.sessions import SessionStore
from oauth_tai.provider.store import Lifetimes, TokenStore
from oauth_tai.provider.users import UserDirectory
from oauth_tai.provider.validator import ProviderValidator
from oauth_tai.redis_connect import redis_connector
from oauth_tai.rules import InterceptPolicy, InterceptRule
from oauth_tai.settings import Settings
from oauth_tai.validators import TokenValidator
from oauth_tai.validators.client_auth import ClientAuth
from oauth_tai.validators.introspection import IntrospectionClient
from oauth_tai.validators.jwt import JwtIssuer, JwtValidator

logger = logging.getLogger(__name__)

# Like the Connections TAI's default filter: every OAuth API path of every
# application under /connections/ needs a token.
CONNECTIONS_POLICY = InterceptPolicy(
    [InterceptRule("/connections/", pattern=r"/connections/[^/]+/oauth/")]
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


@dataclass
class Provider:
    """The provider's parts over one database."""

    engine: Engine
    registry: ClientRegistry
    users: UserDirectory
    store: TokenStore


def open_provider(settings: Settings) -> Provider:
    """Open the database and the provider's registries on it."""
    engine = open_database(settings.effective_database_url)
    store = TokenStore(
        engine,
        Lifetimes(
            code=settings.code_lifetime,
            access_token=settings.access_token_lifetime,
            grant=settings.grant_lifetime,
        ),
    )
    if settings.redis_url:
        # A revocation made here (the CLI, say) reaches every process at once;
        # a process that serves replaces this with its own cache's.
        announcer = TokenCache(
            settings.effective_secret_key(),
            ttl=settings.cache_ttl,
            redis_client=redis_connector(settings.redis_url),
            prefix=settings.redis_prefix,
        )
        store.on_revoke = announcer.revoke_digests
    registry = ClientRegistry(engine, on_revoke_all=store.revoke_consumer)
    users = UserDirectory(engine, on_remove=store.revoke_user)
    return Provider(engine, registry, users, store)


# At start, how long to wait for the revocation channel before serving:
# until then, in-process entries are kept only briefly.
LISTEN_WAIT_SECONDS = 1.0


def build_cache(settings: Settings) -> TokenCache:
    """Open the cache tiers; with Redis, start hearing revocations.

    Call it in the process that serves (after any fork): the listener is a
    thread of the calling process.
    """
    redis_client = redis_connector(settings.redis_url) if settings.redis_url else None
    cache = TokenCache(
        settings.effective_secret_key(),
        ttl=settings.cache_ttl,
        negative_ttl=settings.negative_cache_ttl,
        max_stale=settings.max_stale,
        maxsize=settings.cache_size,
        redis_client=redis_client,
        prefix=settings.redis_prefix,
    )
    if not cache.listen(wait=LISTEN_WAIT_SECONDS):
        logger.info("not subscribed to revocations yet; still trying")
    return cache


def build_breaker(settings: Settings) -> CircuitBreaker:
    """The circuit breaker in front of the provider, as the settings say."""
    return CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown)


def _read_key(path: str) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the private key {path}") from exc


def build_validator(settings: Settings, provider: Provider | None) -> TokenValidator:
    """The provider's own store, or the remote provider the settings name.

    ``provider`` may be ``None`` when the settings name a remote provider;
    without one, it raises :class:`ConfigurationError`.
    """
    if settings.jwks_url:
        return build_jwt_validator(settings)
    if settings.introspection_url:
        return IntrospectionClient(
            settings.introspection_url,
            settings.introspection_client_id,
            timeout=settings.introspection_timeout,
            auth=ClientAuth(
                settings.introspection_auth_method,
                settings.introspection_client_id,
                client_secret=settings.introspection_client_secret,
                private_key=_read_key(settings.introspection_private_key_file),
                key_id=settings.introspection_key_id,
                audience=settings.introspection_url,
            ),
        )
    if provider is None:
        raise ConfigurationError("no local token store and no remote provider set")
    return provider.store


def build_jwt_validator(settings: Settings) -> JwtValidator:
    """Trust the JWT access tokens of the one issuer the settings name."""
    if settings.introspection_url:
        raise ConfigurationError(
            "set OAUTH_TAI_JWKS_URL or OAUTH_TAI_INTROSPECTION_URL, not both"
        )
    if not settings.issuer or not settings.audience:
        raise ConfigurationError(
            "OAUTH_TAI_JWKS_URL needs OAUTH_TAI_ISSUER (the tokens' iss) and "
            "OAUTH_TAI_AUDIENCE (the aud they must hold for this service)"
        )

    issuer = JwtIssuer(settings.issuer, settings.jwks_url, settings.audience)
    return JwtValidator([issuer], leeway=settings.jwt_leeway)


@dataclass
class System:
    """Everything ``serve`` runs: the composed app and the parts it holds."""

    app: WSGIApplication
    provider: Provider
    cache: TokenCache


def build_app(settings: Settings) -> WSGIApplication:
    """Compose provider, middleware and Connections app into one WSGI app."""
    return build_system(settings).app


def build_system(settings: Settings) -> System:
    """Open the database and cache, and compose the three parts."""
    provider = open_provider(settings)
    cache = build_cache(settings)

    def evict(digests: list[bytes]) -> None:
        REVOCATIONS_SENT.inc(len(digests))
        cache.revoke_digests(digests)

    def token_label(token: str) -> str:
        return cache.key(token)[:LOG_HASH_CHARS]

    provider.store.on_revoke = evict
    endpoint_path = f"{settings.context_root}/endpoint/{settings.provider_name}"
    server = ProviderServer(
        ProviderValidator(provider.registry, provider.store, endpoint_path, token_label)
    )
    provider_app = ProviderApp(
        server,
        provider.registry,
        provider.users,
        SessionStore(provider.engine, settings.effective_secret_key()),
        context_root=settings.context_root,
        provider_name=settings.provider_name,
        public_url=settings.public_url,
        trust_remote_user=settings.trust_remote_user,
        trusted_user_header=settings.trusted_user_header,
        template_dir=settings.template_dir,
    )
    api = TrustAssociationMiddleware(
        ConnectionsApp(EntryStore(provider.engine)),
        build_validator(settings, provider),
        cache,
        realm=settings.realm,
        policy=CONNECTIONS_POLICY,
        breaker=build_breaker(settings),
        report_only=settings.report_only,
    )
    # The Application Access page lives under /connections/ too, but the
    # provider serves it with the user's browser session, not a token.
    routes: list[tuple[str, WSGIApplication]] = [
        (ACCESS_PAGE, provider_app),
        ("/connections/", api),
    ]
    routed = PrefixRouter(routes, default=provider_app)
    app = with_operations(routed, settings, provider.engine)
    return System(app, provider, cache)


class RevocationFollower:
    """Evict from this process's cache what other processes revoked.

    The provider records every revoked access token; a process that caches
    answers reads the new records every ``interval`` seconds and evicts
    them from both tiers, so a token revoked by the CLI or by another
    worker is refused here within that time.

    :param store: the provider's token store.
    :param cache: the cache to evict from.
    :param interval: seconds between reads.
    """

    def __init__(self, store: TokenStore, cache: TokenCache, interval: float = 1.0):
        self.store = store
        self.cache = cache
        self.interval = interval
        self.last_id = store.latest_revocation()
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="revocations", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> int:
        """Evict what was revoked since the last poll; return how many."""
        self.last_id, digests = self.store.revocations_since(self.last_id)
        self.cache.revoked_elsewhere(
            self.cache.key_for_digest(digest) for digest in digests
        )
        FEED_RECEIVED.inc(len(digests))
        return len(digests)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except SQLAlchemyError:
                # Without the feed a revoked token could live on in L1, so
                # drop L1 while the database cannot be read.
                logger.exception("cannot read revocations; clearing the cache")
                self.cache.clear()


class PrefixRouter:
    """Send each request to the first app whose path prefix matches.

    Unlike werkzeug's dispatcher it leaves ``SCRIPT_NAME`` and ``PATH_INFO``
    alone, so every app sees the full path it routes on.
    """

    def __init__(
        self, routes: list[tuple[str, WSGIApplication]], default: WSGIApplication
    ) -> None:
        self.routes = routes
        self.default = default

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.routes:
            if path.startswith(prefix):
                return app(environ, start_response)

        return self.default(environ, start_response)
