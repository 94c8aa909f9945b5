"""Assembling the parts from settings: what ``oauth-tai serve`` runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from oauth_tai.cache import TokenCache, connect_redis
from oauth_tai.connections.app import API_ROOT, ConnectionsApp
from oauth_tai.connections.entries import EntryStore
from oauth_tai.database import open_database
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.provider.app import ProviderApp
from oauth_tai.provider.registry import ClientRegistry
from oauth_tai.provider.server import ProviderServer
from oauth_tai.provider.sessions import SessionStore
from oauth_tai.provider.store import Lifetimes, TokenStore
from oauth_tai.provider.users import UserDirectory
from oauth_tai.provider.validator import ProviderValidator
from oauth_tai.settings import Settings
from oauth_tai.validators import TokenValidator
from oauth_tai.validators.introspection import IntrospectionClient

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
    registry = ClientRegistry(engine, on_remove=store.revoke_consumer)
    return Provider(engine, registry, UserDirectory(engine), store)


def build_cache(settings: Settings) -> TokenCache:
    redis_client = connect_redis(settings.redis_url) if settings.redis_url else None
    return TokenCache(
        settings.effective_secret_key(),
        ttl=settings.cache_ttl,
        negative_ttl=settings.negative_cache_ttl,
        maxsize=settings.cache_size,
        redis_client=redis_client,
        prefix=settings.redis_prefix,
    )


def build_validator(settings: Settings, provider: Provider) -> TokenValidator:
    """The provider's own store, or the remote endpoint the settings name."""
    if settings.introspection_url:
        return IntrospectionClient(
            settings.introspection_url,
            settings.introspection_client_id,
            settings.introspection_client_secret,
            timeout=settings.introspection_timeout,
        )
    return provider.store


def build_app(settings: Settings) -> WSGIApplication:
    """Compose provider, middleware and Connections app into one WSGI app."""
    provider = open_provider(settings)
    cache = build_cache(settings)

    def evict(digests: list[bytes]) -> None:
        for digest in digests:
            cache.evict(cache.key_for_digest(digest))

    provider.store.on_revoke = evict
    endpoint_path = f"{settings.context_root}/endpoint/{settings.provider_name}"
    server = ProviderServer(
        ProviderValidator(provider.registry, provider.store, endpoint_path)
    )
    provider_app = ProviderApp(
        server,
        provider.registry,
        provider.users,
        SessionStore(provider.engine, settings.effective_secret_key()),
        context_root=settings.context_root,
        provider_name=settings.provider_name,
        public_url=settings.public_url,
    )
    api = TrustAssociationMiddleware(
        ConnectionsApp(EntryStore(provider.engine)),
        build_validator(settings, provider),
        cache,
        realm=settings.realm,
        prefixes=(API_ROOT + "/",),
    )
    return PrefixRouter([(API_ROOT + "/", api)], default=provider_app)


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
