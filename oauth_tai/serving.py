"""Running the composed system on a real HTTP server."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Final

from sqlalchemy.exc import SQLAlchemyError
from werkzeug.serving import make_server

from oauth_tai.logs import configure_logging
from oauth_tai.metrics import start_metrics_listener
from oauth_tai.provider.store import TokenStore
from oauth_tai.settings import Settings
from oauth_tai.system import RevocationFollower, System, build_system

logger = logging.getLogger(__name__)

# Expired rows harm nothing but space; an hourly sweep keeps tables small
# without competing with requests.
PURGE_INTERVAL_SECONDS: Final = 3600


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve provider, middleware and Connections app until interrupted."""
    configure_logging(settings)
    system = build_system(settings)
    server = make_server(host, port, system.app, threaded=True)
    start_background(system)
    start_metrics_listener(settings)
    announce(settings, f"http://{host}:{server.port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()


def start_background(system: System) -> None:
    """Start what each serving process runs beside its requests.

    The revocation follower keeps this process's cache in step with
    revocations made elsewhere; the purge drops expired rows, which is
    harmless to repeat in every process.
    """
    purger = threading.Thread(
        target=_purge_forever, args=(system.provider.store,), daemon=True
    )
    purger.start()
    RevocationFollower(system.provider.store, system.cache).start()


def announce(settings: Settings, base: str) -> None:
    """Print where the server listens and what it runs on."""
    cache = "Redis + in-process" if settings.redis_url else "in-process"
    print(
        f"oauth-tai is serving on {base}\n"
        f"  provider metadata: {base}/.well-known/oauth-authorization-server"
        f"{settings.context_root}/endpoint/{settings.provider_name}\n"
        f"  protected API:     {base}/connections/opensocial/oauth/rest/"
        "people/@me/@self\n"
        f"  database: {_database_label(settings)}; token cache: {cache}\n"
        "Follow the walkthrough in README.md from another terminal; Ctrl-C stops.",
        flush=True,
    )


def _purge_forever(store: TokenStore) -> None:
    while True:
        time.sleep(PURGE_INTERVAL_SECONDS)
        try:
            gone = store.purge()
        except SQLAlchemyError:
            logger.exception("purging expired tokens failed; trying again later")
            continue
        logger.debug("purged %d expired codes and tokens", gone)


def _database_label(settings: Settings) -> str:
    url = settings.effective_database_url
    # Only the scheme and, for SQLite, the file: a server URL may hold a
    # password.
    if url.startswith("sqlite"):
        return url.removeprefix("sqlite:///")
    return url.split(":", 1)[0]
