"""gunicorn configuration for ``gateway``: the decision endpoint for nginx.

Run it where the ``OAUTH_TAI_*`` settings apply::

    gunicorn -c deploy/gunicorn/gateway.py

It answers nginx ``auth_request`` at ``/auth`` for every path (nginx
decides which locations ask). For other rules, or to be a reverse proxy,
name the factory with arguments on the command line, which wins over
``wsgi_app`` below::

    gunicorn -c deploy/gunicorn/gateway.py \\
        'oauth_tai.wsgi:gateway_app(prefixes=["/api/"], upstream="http://127.0.0.1:9000")'
"""

import os
import tempfile

# Before anything imports oauth-tai: see deploy/gunicorn/serve.py.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="oauth-tai-metrics-"
    )

from oauth_tai.wsgi import child_exit, on_exit, on_starting, when_ready  # noqa: E402

wsgi_app = "oauth_tai.wsgi:gateway_app()"
bind = ["127.0.0.1:8081"]

# A decision on a cache hit takes microseconds; threads cover the rarer
# wait on the provider or Redis.
workers = 2
worker_class = "gthread"
threads = 8

preload_app = False
timeout = 30
graceful_timeout = 10
# nginx keeps its auth_request connections open when asked to.
keepalive = 30
proc_name = "oauth-tai-gateway"
forwarded_allow_ips = "127.0.0.1"
control_socket_disable = True

__all__ = ["child_exit", "on_exit", "on_starting", "when_ready"]
