"""The ``oauth-tai`` command: serve, and manage consumers, users, tokens and schema."""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from oauth_tai.database import connect_database
from oauth_tai.errors import OAuthTaiError
from oauth_tai.logs import configure_logging
from oauth_tai.migrations import LATEST, MIGRATIONS, current_version, upgrade
from oauth_tai.provider.registry import Consumer
from oauth_tai.settings import Settings
from oauth_tai.system import Provider, open_provider

DEMO_USER = "alice"
DEMO_CLIENT = "demo-app"
DEMO_REDIRECT = "http://127.0.0.1:9000/callback"


class CommandError(OAuthTaiError):
    """A command cannot do what it was asked; its message is for the user."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        # A group named without its command: show that group's commands.
        helper = getattr(args, "help_parser", parser)
        helper.print_help(sys.stderr)
        return 2

    try:
        settings = Settings.load()
        # Commands log warnings and the audit trail; serve and gateway
        # set the configured level when they start.
        configure_logging(settings, level="WARNING")
        result: int = args.run(args, settings)
    except OAuthTaiError as exc:
        print(f"oauth-tai: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A folder or file the settings name cannot be used.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"oauth-tai: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oauth-tai",
        description="OAuth 2.0 provider, trust association middleware and tools.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

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
        help="gunicorn worker type with --workers N (default sync)",
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
        parents=[_policy_options()],
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

    _add_clients(commands, common)
    _add_users(commands, common)
    _add_database(commands, common)

    tokens = commands.add_parser("tokens", help="manage stored tokens")
    tokens.set_defaults(help_parser=tokens)
    tokens_commands = tokens.add_subparsers(title="commands", metavar="COMMAND")
    purge = tokens_commands.add_parser(
        "purge", parents=[common], help="delete expired codes and tokens"
    )
    purge.set_defaults(run=_tokens_purge)
    _add_operations(commands, common)
    return parser


def _policy_options() -> argparse.ArgumentParser:
    """The gateway's path rules; check-token takes the same to judge as it."""
    policy = argparse.ArgumentParser(add_help=False)
    policy.add_argument(
        "--prefix",
        action="append",
        default=[],
        help="paths under PREFIX need a token (repeatable; default /)",
    )
    policy.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PREFIX",
        help="paths under PREFIX never need one (repeatable)",
    )
    return policy


def _add_clients(commands: Any, common: argparse.ArgumentParser) -> None:
    clients = commands.add_parser("clients", help="manage registered consumers")
    clients.set_defaults(help_parser=clients)
    sub = clients.add_subparsers(title="commands", metavar="COMMAND")

    add = sub.add_parser("add", parents=[common], help="register a consumer")
    add.add_argument("client_id")
    add.add_argument("--name", required=True, help="name shown to users")
    add.add_argument("--redirect-uri", required=True)
    add.add_argument(
        "--auto-authorize",
        action="store_true",
        help="trusted consumer: users are not asked for consent",
    )
    add.set_defaults(run=_clients_add)

    edit = sub.add_parser("edit", parents=[common], help="change a consumer")
    edit.add_argument("client_id")
    edit.add_argument("--name")
    edit.add_argument("--redirect-uri")
    state = edit.add_mutually_exclusive_group()
    state.add_argument(
        "--disable",
        dest="enabled",
        action="store_false",
        default=None,
        help="refuse the consumer and revoke all its grants",
    )
    state.add_argument("--enable", dest="enabled", action="store_true")
    trust = edit.add_mutually_exclusive_group()
    trust.add_argument(
        "--auto-authorize",
        dest="auto_authorize",
        action="store_true",
        default=None,
        help="users are not asked for consent",
    )
    trust.add_argument(
        "--no-auto-authorize", dest="auto_authorize", action="store_false"
    )
    edit.set_defaults(run=_clients_edit)

    for name, helptext, run in [
        ("show", "show one consumer", _clients_show),
        ("delete", "delete a consumer and revoke its grants", _clients_delete),
        ("reset-secret", "give a consumer a new secret", _clients_reset_secret),
    ]:
        command = sub.add_parser(name, parents=[common], help=helptext)
        command.add_argument("client_id")
        command.set_defaults(run=run)

    listing = sub.add_parser("list", parents=[common], help="list consumers")
    listing.add_argument("--offset", type=_count, default=0)
    listing.add_argument("--limit", type=_count, default=None)
    listing.set_defaults(run=_clients_list)

    count = sub.add_parser("count", parents=[common], help="count consumers")
    count.set_defaults(run=_clients_count)


def _add_users(commands: Any, common: argparse.ArgumentParser) -> None:
    users = commands.add_parser("users", help="manage the built-in user directory")
    users.set_defaults(help_parser=users)
    sub = users.add_subparsers(title="commands", metavar="COMMAND")

    add = sub.add_parser("add", parents=[common], help="add a user")
    add.add_argument("username")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from the first line of standard input",
    )
    add.set_defaults(run=_users_add)

    listing = sub.add_parser("list", parents=[common], help="list users")
    listing.set_defaults(run=_users_list)

    delete = sub.add_parser("delete", parents=[common], help="delete a user")
    delete.add_argument("username")
    delete.set_defaults(run=_users_delete)


def _add_operations(commands: Any, common: argparse.ArgumentParser) -> None:
    check = commands.add_parser(
        "check-token",
        parents=[common, _policy_options()],
        help="explain what the middleware decides for a token read from stdin",
    )
    check.add_argument(
        "--path",
        default="/connections/opensocial/oauth/rest/people/@me/@self",
        help="the request's path (default: the profile API)",
    )
    check.add_argument("--method", default="GET", help="the request's method")
    check.add_argument(
        "--file",
        metavar="F",
        help="read the token from file F instead of standard input",
    )
    check.set_defaults(run=_check_token)

    shown = commands.add_parser(
        "settings",
        parents=[common],
        help="show the settings in force, or the reference with --markdown",
    )
    shown.add_argument(
        "--markdown",
        action="store_true",
        help="print the configuration reference (docs/configuration.md)",
    )
    shown.set_defaults(run=_settings)


def _add_database(commands: Any, common: argparse.ArgumentParser) -> None:
    database = commands.add_parser("db", help="manage the database schema")
    database.set_defaults(help_parser=database)
    sub = database.add_subparsers(title="commands", metavar="COMMAND")

    upgrade = sub.add_parser(
        "upgrade",
        parents=[common],
        help="bring the schema up to date (every command does it first too)",
    )
    upgrade.set_defaults(run=_db_upgrade)

    version = sub.add_parser(
        "version",
        parents=[common],
        help="show the schema version and the steps an upgrade would take",
    )
    version.set_defaults(run=_db_version)


# -- serve -------------------------------------------------------------------


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return port


def _count(text: str) -> int:
    # SQLite and PostgreSQL take 64-bit integers; beyond that is a typo.
    count = int(text) if text.isdigit() else -1
    if not 0 <= count < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count")
    return count


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.workers < 1:
        raise CommandError("--workers must be 1 or more")

    if args.workers == 1:
        if args.worker_class is not None or args.threads is not None:
            raise CommandError("--worker-class and --threads need --workers 2 or more")

        from oauth_tai.serving import serve

        serve(settings, args.host, args.port)
        return 0

    from oauth_tai.workers import serve_workers

    serve_workers(
        settings,
        args.host,
        args.port,
        workers=args.workers,
        worker_class=args.worker_class or "sync",
        threads=args.threads or 1,
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
        _say(
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
    _say(
        args,
        {"created": True, **values},
        "Demo created. These credentials are shown only now; paste this line\n"
        "into the shell where you follow the README walkthrough:\n\n"
        f"  {exports}\n",
    )
    return 0


# -- clients -----------------------------------------------------------------


def _clients_add(args: argparse.Namespace, settings: Settings) -> int:
    consumer, secret = _provider(settings).registry.add(
        args.client_id,
        args.name,
        args.redirect_uri,
        auto_authorize=args.auto_authorize,
    )
    data = {**_consumer_json(consumer), "client_secret": secret}
    _say(
        args,
        data,
        f"Registered {consumer.client_id} ({consumer.name}).\n"
        f"client_secret: {secret}\n"
        "Keep the secret now: it is stored only as a hash and not shown again.",
    )
    return 0


def _clients_edit(args: argparse.Namespace, settings: Settings) -> int:
    changes = {
        "name": args.name,
        "redirect_uri": args.redirect_uri,
        "enabled": args.enabled,
        "auto_authorize": args.auto_authorize,
    }
    if all(value is None for value in changes.values()):
        raise CommandError(
            "nothing to change: give --name, --redirect-uri, --disable, "
            "--enable or --[no-]auto-authorize"
        )

    consumer = _provider(settings).registry.edit(args.client_id, **changes)
    _say(args, _consumer_json(consumer), f"Changed {consumer.client_id}.")
    return 0


def _clients_show(args: argparse.Namespace, settings: Settings) -> int:
    consumer = _provider(settings).registry.get(args.client_id)
    data = _consumer_json(consumer)
    _say(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


def _clients_list(args: argparse.Namespace, settings: Settings) -> int:
    if args.offset < 0 or (args.limit is not None and args.limit < 1):
        raise CommandError("--offset must be 0 or more and --limit 1 or more")

    found = _provider(settings).registry.list(args.offset, args.limit)
    lines = [f"{c.client_id}\t{c.name}\t{c.redirect_uri}" for c in found]
    _say(
        args,
        [_consumer_json(c) for c in found],
        "\n".join(lines) if lines else "No consumers registered.",
    )
    return 0


def _clients_count(args: argparse.Namespace, settings: Settings) -> int:
    count = _provider(settings).registry.count()
    _say(args, {"count": count}, str(count))
    return 0


def _clients_delete(args: argparse.Namespace, settings: Settings) -> int:
    _provider(settings).registry.delete(args.client_id)
    _say(
        args,
        {"deleted": args.client_id},
        f"Deleted {args.client_id}; its grants and tokens are revoked.",
    )
    return 0


def _clients_reset_secret(args: argparse.Namespace, settings: Settings) -> int:
    secret = _provider(settings).registry.reset_secret(args.client_id)
    _say(
        args,
        {"client_id": args.client_id, "client_secret": secret},
        f"client_secret: {secret}\nThe old secret no longer works.",
    )
    return 0


# -- users and tokens ----------------------------------------------------------


def _users_add(args: argparse.Namespace, settings: Settings) -> int:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password on standard input")

    _provider(settings).users.add(args.username, password)
    _say(args, {"username": args.username}, f"Added user {args.username}.")
    return 0


def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    names = _provider(settings).users.list()
    _say(args, names, "\n".join(names) if names else "No users.")
    return 0


def _users_delete(args: argparse.Namespace, settings: Settings) -> int:
    _provider(settings).users.delete(args.username)
    _say(args, {"deleted": args.username}, f"Deleted user {args.username}.")
    return 0


def _tokens_purge(args: argparse.Namespace, settings: Settings) -> int:
    gone = _provider(settings).store.purge()
    _say(args, {"purged": gone}, f"Purged {gone} expired codes and tokens.")
    return 0


# -- operations ----------------------------------------------------------------


def _check_token(args: argparse.Namespace, settings: Settings) -> int:
    from oauth_tai.checktoken import checker_for, read_token

    if not args.path.startswith("/"):
        raise CommandError(f"a path starts with /, unlike {args.path!r}")

    token = read_token(_token_input(args.file))
    if token is None:
        raise CommandError("give exactly one token, on standard input or in --file")

    explanation = checker_for(settings, args.prefix, args.exclude).explain(
        token, args.path, args.method
    )
    _say(args, explanation.to_json(), explanation.to_text())
    return 0 if explanation.decision != "refused" else 3


def _token_input(path: str | None) -> str:
    # Never an argument: the process list would show it to every user.
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the token from {path}: {exc}") from exc

    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("Paste the token (it is not shown): ")
    return sys.stdin.read()


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    from oauth_tai.reference import settings_markdown, settings_values

    if args.markdown:
        sys.stdout.write(settings_markdown())
        return 0

    values = settings_values(settings)
    _say(args, values, "\n".join(f"{k} = {v!r}" for k, v in values.items()))
    return 0


# -- database ------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    engine = connect_database(settings.effective_database_url)
    try:
        done = upgrade(engine)
    finally:
        engine.dispose()

    if done.applied:
        steps = ", ".join(str(version) for version in done.applied)
        text = (
            f"Upgraded the database schema from version {done.before} to "
            f"{done.after} (steps {steps})."
        )
    else:
        text = f"The database schema is up to date (version {done.after})."
    _say(args, dataclasses.asdict(done), text)
    return 0


def _db_version(args: argparse.Namespace, settings: Settings) -> int:
    engine = connect_database(settings.effective_database_url)
    try:
        version = current_version(engine)
    finally:
        engine.dispose()

    pending = [step for step in MIGRATIONS if step.version > version]
    data = {
        "version": version,
        "latest": LATEST,
        "pending": [
            {"version": step.version, "description": step.description}
            for step in pending
        ],
    }
    if version > LATEST:
        text = (
            f"Schema version {version}: newer than this oauth-tai, which "
            f"knows versions up to {LATEST}."
        )
    elif pending:
        lines = [f"  {step.version}: {step.description}" for step in pending]
        text = "\n".join(
            [f"Schema version {version} of {LATEST}; `oauth-tai db upgrade` takes:"]
            + lines
        )
    else:
        text = f"Schema version {version}, up to date."
    _say(args, data, text)
    return 0


# -- helpers -------------------------------------------------------------------


def _provider(settings: Settings) -> Provider:
    return open_provider(settings)


def _consumer_json(consumer: Consumer) -> dict[str, Any]:
    return dataclasses.asdict(consumer)


def _say(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    else:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
