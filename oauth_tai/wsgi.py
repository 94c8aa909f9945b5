"""Entry points for running oauth-tai under gunicorn with a configuration file.

``deploy/gunicorn/serve.py`` and ``deploy/gunicorn/gateway.py`` name these
as their ``wsgi_app`` and hooks. Each worker calls its factory after the
fork, so every worker opens its own database and Redis connections and
starts its own revocation follower. Settings come from the environment
(``OAUTH_TAI_*``) as for every other command.

The factories take literal arguments, as gunicorn allows::

    gunicorn -c deploy/gunicorn/gateway.py \\
        'oauth_tai.wsgi:gateway_app(prefixes=["/api/"], exclude=["/api/public/"])'

Metrics from several workers are added up only if
``PROMETHEUS_MULTIPROC_DIR`` is set before any worker imports oauth-tai;
the configuration files set it first thing, then use the hooks below.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oauth_tai.logs import configure_logging
from oauth_tai.settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger(__name__)

# The configuration files make a metrics directory with this prefix in the
# temporary folder when none is given; the master removes it on exit.
MADE_METRICS_DIR_PREFIX = "oauth-tai-metrics-"


def serve_app() -> WSGIApplication:
    """Build provider, middleware and Connections app in this worker."""
    from oauth_tai.serving import start_background
    from oauth_tai.system import build_system

    settings = Settings.load()
    configure_logging(settings)
    system = build_system(settings)
    start_background(system)
    return system.app


def gateway_app(
    prefixes: Sequence[str] = ("/",),
    exclude: Sequence[str] = (),
    upstream: str | None = None,
    hide_token: bool = False,
) -> WSGIApplication:
    """Build the gateway in this worker; the arguments are the command's."""
    from oauth_tai.gateway.serving import build_gateway, gateway_policy

    settings = Settings.load()
    configure_logging(settings)
    gateway = build_gateway(
        settings,
        gateway_policy(prefixes, exclude),
        upstream=upstream,
        hide_token=hide_token,
    )
    if gateway.follower is not None:
        gateway.follower.start()
    return gateway.app


# -- gunicorn hooks, run in the master ----------------------------------------


def on_starting(server: Any) -> None:
    """Prepare what the workers share, once, before any of them starts.

    The metrics directory is emptied, as a past run's counts would add to
    this one's. The secret key is made if it must be, and the schema
    brought up to date: workers that each tried would race, and all but
    one would fail.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()

    from oauth_tai.system import open_provider

    settings = Settings.load()
    settings.effective_secret_key()
    if not (settings.introspection_url or settings.jwks_url):
        open_provider(settings).engine.dispose()


def when_ready(server: Any) -> None:
    """Start the separate metrics listener, if the settings ask for one."""
    from oauth_tai.metrics import start_metrics_listener

    start_metrics_listener(Settings.load())


def child_exit(server: Any, worker: Any) -> None:
    """Let the metrics forget the live gauges of a worker that exited."""
    from oauth_tai.metrics import mark_process_dead

    mark_process_dead(int(worker.pid))


def on_exit(server: Any) -> None:
    """Remove the metrics directory if the configuration file made it."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return

    path = Path(directory)
    made = path.parent == Path(tempfile.gettempdir()) and path.name.startswith(
        MADE_METRICS_DIR_PREFIX
    )
    if made:
        shutil.rmtree(path, ignore_errors=True)
