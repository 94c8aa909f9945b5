"""``oauth-tai serve``, ``gateway`` and ``demo``: running the parts, and trying them."""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from oauth_tai.cli.common import CommandError, policy_options, say
from oauth_tai.settings import Settings
from oauth_tai.system import open_provider

DEMO_USER = "alice"
DEMO_CLIENT = "demo-app"
DEMO_REDIRECT = "http://127.0.0.1:9000/callback"


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``serve``, ``gateway`` and ``demo`` to ``commands``."""
    serve = commands.add_parser(
        "serve", help="run provider, middleware and app on one port"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8080)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes; more than 1 runs gunicorn (default 1)",
    )
    serve.add_argument(
        "--worker-class",
        choices=("sync", "gthread"),
        help="gunicorn worker type with --workers N (default sync, or gthread "
        "with --threads above 1)",
    )
    serve.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help="threads per gthread worker (default 1)",
    )
    serve.set_defaults(run=_serve)

    gateway = commands.add_parser(
        "gateway",
        parents=[policy_options()],
        help="answer nginx auth_request and Traefik ForwardAuth at /auth, "
        "or proxy to --upstream",
    )
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=_port, default=8081)
    gateway.add_argument("--upstream", metavar="URL", help="be a reverse proxy to URL")
    gateway.add_argument(
        "--hide-token",
        action="store_true",
        help="drop bearer Authorization headers before the upstream",
    )
    gateway.set_defaults(run=_gateway)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="create a demo user and consumer once, and print their credentials",
    )
    demo.add_argument(
        "--base-url",
        default="http://127.0.0.1:8080",
        help="where the server will listen, for the printed walkthrough line",
    )
    demo.set_defaults(run=_demo)


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return port


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.workers < 1:
        raise CommandError("--workers must be 1 or more")
    if args.threads is not None and args.threads < 1:
        raise CommandError("--threads must be 1 or more")

    if args.workers == 1:
        if args.worker_class is not None or args.threads is not None:
            raise CommandError("--worker-class and --threads need --workers 2 or more")

        from oauth_tai.serving import serve

        serve(settings, args.host, args.port)
        return 0

    threads = args.threads or 1
    if args.worker_class == "sync" and threads > 1:
        raise CommandError("sync workers have one thread; --threads needs gthread")

    from oauth_tai.workers import serve_workers

    serve_workers(
        settings,
        args.host,
        args.port,
        workers=args.workers,
        # Threads mean gthread workers: said here, not left to gunicorn.
        worker_class=args.worker_class or ("gthread" if threads > 1 else "sync"),
        threads=threads,
    )
    return 0


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
    from oauth_tai.gateway.serving import gateway_policy, serve_gateway

    for prefix in [*args.prefix, *args.exclude]:
        if not prefix.startswith("/"):
            raise CommandError(f"a path prefix starts with /, unlike {prefix!r}")

    serve_gateway(
        settings,
        args.host,
        args.port,
        gateway_policy(args.prefix, args.exclude),
        upstream=args.upstream,
        hide_token=args.hide_token,
    )
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    provider = open_provider(settings)
    if provider.registry.find(DEMO_CLIENT) is not None:
        say(
            args,
            {"created": False},
            f"The demo is set up already (consumer {DEMO_CLIENT}, user {DEMO_USER}).\n"
            "Its credentials were shown once; to start over, stop the server,\n"
            "delete ./var and run `make run` again.",
        )
        return 0

    password = secrets.token_urlsafe(12)
    provider.users.add(DEMO_USER, password)
    _consumer, secret = provider.registry.add(DEMO_CLIENT, "Demo App", DEMO_REDIRECT)
    values = {
        "BASE": args.base_url.rstrip("/"),
        "DEMO_USER": DEMO_USER,
        "DEMO_PASSWORD": password,
        "CLIENT_ID": DEMO_CLIENT,
        "CLIENT_SECRET": secret,
        "REDIRECT_URI": DEMO_REDIRECT,
    }
    exports = "export " + " ".join(f"{k}={v}" for k, v in values.items())
    say(
        args,
        {"created": True, **values},
        "Demo created. These credentials are shown only now; paste this line\n"
        "into the shell where you follow the README walkthrough:\n\n"
        f"  {exports}\n",
    )
    return 0
