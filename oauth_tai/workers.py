"""Serving the composed system from several gunicorn worker processes.

Use it when one process is not enough: ``oauth-tai serve --workers N``
runs N workers behind one listening socket, sharing the database and,
when ``OAUTH_TAI_REDIS_URL`` is set, the Redis cache tier.

Each worker builds its own system after the fork: its own database
engine, Redis connection, in-process cache, revocation follower and purge.
Nothing that holds a connection is created before the fork, because a
socket shared by two processes interleaves their traffic and a lock held
by a thread of the parent stays held in the child. The master only checks
the settings and brings the schema up to date, so a bad configuration
fails once, at start, instead of in every worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Final

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from oauth_tai.errors import ConfigurationError
from oauth_tai.logs import configure_logging
from oauth_tai.metrics import mark_process_dead
from oauth_tai.serving import announce, start_background
from oauth_tai.settings import Settings
from oauth_tai.system import build_system, open_provider

logger = logging.getLogger(__name__)

WORKER_CLASSES: Final = ("sync", "gthread")

# Seconds a worker gets to finish its requests after a stop: enough for
# any request of ours, short enough that a restart does not hang.
GRACEFUL_TIMEOUT_SECONDS: Final = 10


class WorkerServer(BaseApplication):
    """The composed system as a gunicorn application, built in each worker.

    gunicorn settings that oauth-tai has no option for (an access log,
    timeouts, TLS) come from gunicorn's own ``GUNICORN_CMD_ARGS``
    variable; the options below win over it.

    :param settings: the configuration every worker builds its system from.
    :param host: the address to listen on.
    :param port: the port to listen on.
    :param workers: how many worker processes to run.
    :param worker_class: ``sync`` (one request at a time per worker) or
        ``gthread`` (a thread pool per worker).
    :param threads: threads per ``gthread`` worker.

    ::

        WorkerServer(Settings.load(), "127.0.0.1", 8080, workers=4).run()
    """

    def __init__(
        self,
        settings: Settings,
        host: str,
        port: int,
        *,
        workers: int,
        worker_class: str = "sync",
        threads: int = 1,
    ) -> None:
        if workers < 1 or threads < 1:
            raise ConfigurationError("workers and threads must be 1 or more")
        if worker_class not in WORKER_CLASSES:
            raise ConfigurationError(
                f"the worker class is one of {', '.join(WORKER_CLASSES)}, "
                f"not {worker_class!r}"
            )
        if worker_class == "sync" and threads > 1:
            # gunicorn would quietly run gthread workers instead.
            raise ConfigurationError("sync workers have one thread each")

        self.settings = settings
        address = f"[{host}]" if ":" in host else host
        self.options: dict[str, object] = {
            "bind": [f"{address}:{port}"],
            "workers": workers,
            "worker_class": worker_class,
            "threads": threads,
            # Off, so that load() runs in each worker after the fork.
            "preload_app": False,
            "proc_name": "oauth-tai",
            "loglevel": settings.log_level.lower(),
            "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
            "when_ready": self._announce,
            "child_exit": _forget_worker,
        }
        super().__init__(prog="oauth-tai serve")

    def load_config(self) -> None:
        """Apply ``GUNICORN_CMD_ARGS``, then the options given here."""
        if "control_socket_disable" in self.cfg.settings:
            # Newer gunicorns open a control socket at one path per user,
            # which two servers of the same user would fight over.
            self.cfg.set("control_socket_disable", True)

        parser = self.cfg.parser()
        from_environment = parser.parse_args(self.cfg.get_cmd_args_from_env())
        for name, value in vars(from_environment).items():
            if value is not None and name != "args":
                self.cfg.set(name.lower(), value)

        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Callable[..., Iterable[bytes]]:
        """Build this worker's system and start its background threads."""
        # gunicorn types the WSGI environ more loosely than typeshed does;
        # the app is the same either way.
        system = build_system(self.settings)
        start_background(system)
        return system.app

    def _announce(self, arbiter: Arbiter) -> None:
        # Called in the master once the sockets are bound, so the address
        # printed is one that answers, with the real port if 0 was asked.
        announce(self.settings, str(arbiter.LISTENERS[0]))


def _forget_worker(_arbiter: Arbiter, worker: Worker) -> None:
    # Called in the master, which set the pid (an int, whatever the stubs
    # say) at the fork: a worker's live gauges end with it.
    mark_process_dead(int(worker.pid))


def serve_workers(
    settings: Settings,
    host: str,
    port: int,
    *,
    workers: int,
    worker_class: str = "sync",
    threads: int = 1,
) -> None:
    """Serve provider, middleware and Connections app from N workers.

    Raises what :func:`oauth_tai.system.open_provider` raises when the
    database is unusable, before any worker starts.
    """
    configure_logging(settings)
    if not settings.redis_url:
        logger.info(
            "no OAUTH_TAI_REDIS_URL: each worker caches on its own, and "
            "learns of revocations made in another one from the database"
        )

    # Created here, once: workers that each found no key would race to
    # create one, and all but the first would fail.
    settings.effective_secret_key()
    provider = open_provider(settings)
    provider.engine.dispose()

    server = WorkerServer(
        settings,
        host,
        port,
        workers=workers,
        worker_class=worker_class,
        threads=threads,
    )
    server.run()
