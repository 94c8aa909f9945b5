"""Assembling the gateway from settings, and running it: ``oauth-tai gateway``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from werkzeug.serving import make_server

from oauth_tai.gateway.decision import DecisionApp
from oauth_tai.gateway.proxy import protect_upstream, split_upstream
from oauth_tai.gateway.wire import IdentityHeaders
from oauth_tai.health import with_operations
from oauth_tai.logs import configure_logging
from oauth_tai.metrics import start_metrics_listener
from oauth_tai.rules import InterceptPolicy, InterceptRule
from oauth_tai.settings import Settings
from oauth_tai.system import (
    RevocationFollower,
    build_cache,
    build_validator,
    open_provider,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger(__name__)


@dataclass
class Gateway:
    """The gateway's app, and the revocation feed it needs, if any."""

    app: WSGIApplication
    follower: RevocationFollower | None


def build_gateway(
    settings: Settings,
    policy: InterceptPolicy,
    *,
    upstream: str | None = None,
    hide_token: bool = False,
) -> Gateway:
    """Build the decision endpoint, or the reverse proxy to ``upstream``.

    Tokens are checked by the remote provider the settings name, or else
    by the token store in the settings' database, whose revocation feed
    the returned follower reads. Raises :class:`ConfigurationError` for an
    unusable upstream or identity header name before opening anything.

    :param hide_token: drop bearer Authorization headers before the
        upstream; ``gateway_hide_token`` in the settings does the same.
    """
    headers = IdentityHeaders.from_settings(settings)
    if upstream is not None:
        split_upstream(upstream)

    remote = bool(settings.introspection_url or settings.jwks_url)
    if remote and not settings.redis_url:
        # Nothing tells this process of a revocation: only the cache's
        # life bounds how long a revoked token is still accepted.
        logger.warning(
            "tokens are checked by a remote provider and no Redis is shared "
            "with it: a revoked token may be accepted for up to %d s "
            "(OAUTH_TAI_CACHE_TTL); set OAUTH_TAI_REDIS_URL to the provider's "
            "Redis to hear revocations at once",
            settings.cache_ttl,
        )
    provider = None if remote else open_provider(settings)
    cache = build_cache(settings)
    validator = build_validator(settings, provider)
    follower = None if provider is None else RevocationFollower(provider.store, cache)

    app: WSGIApplication
    if upstream is None:
        app = DecisionApp(
            validator, cache, policy=policy, realm=settings.realm, headers=headers
        )
    else:
        app = protect_upstream(
            upstream,
            validator,
            cache,
            policy=policy,
            realm=settings.realm,
            headers=headers,
            hide_token=hide_token or settings.gateway_hide_token,
        )

    engine = None if provider is None else provider.engine
    return Gateway(with_operations(app, settings, engine), follower)


def gateway_policy(prefixes: Sequence[str], exclude: Sequence[str]) -> InterceptPolicy:
    """One token-only rule per prefix ("/" when none), minus ``exclude``."""
    rules = [InterceptRule(prefix) for prefix in prefixes or ("/",)]
    return InterceptPolicy(rules, exclude=exclude)


def serve_gateway(
    settings: Settings,
    host: str,
    port: int,
    policy: InterceptPolicy,
    *,
    upstream: str | None = None,
    hide_token: bool = False,
) -> None:
    """Serve the gateway until interrupted."""
    configure_logging(settings)
    gateway = build_gateway(settings, policy, upstream=upstream, hide_token=hide_token)
    server = make_server(host, port, gateway.app, threaded=True)
    if gateway.follower is not None:
        gateway.follower.start()
    start_metrics_listener(settings)

    base = f"http://{host}:{server.port}"
    source = settings.introspection_url or settings.jwks_url or "the local store"
    role = (
        f"reverse proxy to {upstream}"
        if upstream
        else f"decision endpoint at {base}/auth"
    )
    print(
        f"oauth-tai gateway is serving on {base}\n"
        f"  {role}\n"
        f"  tokens checked by: {source}\n"
        "Ctrl-C stops.",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
