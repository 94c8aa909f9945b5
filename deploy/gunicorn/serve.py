"""gunicorn configuration for ``serve``: provider, middleware and Connections app.

Run it from a folder where the ``OAUTH_TAI_*`` settings apply (or with
them in the environment, as the systemd unit and the Kubernetes manifests
give them)::

    gunicorn -c deploy/gunicorn/serve.py

Options given on the command line or in ``GUNICORN_CMD_ARGS`` win over
this file, for example ``--bind 0.0.0.0:8080 --workers 4``.
"""

import os
import tempfile

# Before anything imports oauth-tai (and with it prometheus_client): the
# workers must find the directory where they keep their metrics, or each
# would count alone and /metrics would show one worker's share.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="oauth-tai-metrics-"
    )

from oauth_tai.wsgi import child_exit, on_exit, on_starting, when_ready  # noqa: E402

wsgi_app = "oauth_tai.wsgi:serve_app()"
bind = ["127.0.0.1:8080"]

# Threads serve the provider's pages and calls to the database while
# another request waits on it; two workers per core is gunicorn's advice.
workers = 2
worker_class = "gthread"
threads = 4

# Each worker builds its own connections after the fork.
preload_app = False
timeout = 30
graceful_timeout = 10
keepalive = 5
proc_name = "oauth-tai-serve"

# Only the proxy on this host may say which scheme the client used.
forwarded_allow_ips = "127.0.0.1"

# Newer gunicorns open a control socket at a fixed path per user; two
# servers of one user would fight over it.
control_socket_disable = True

__all__ = ["child_exit", "on_exit", "on_starting", "when_ready"]
