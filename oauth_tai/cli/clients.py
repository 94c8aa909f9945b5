"""``oauth-tai clients``: registering and managing consumers.

A consumer's secret is printed once, when it is created or reset; the
registry keeps only its hash.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from oauth_tai.cli.common import CommandError, say
from oauth_tai.provider.registry import Consumer
from oauth_tai.settings import Settings
from oauth_tai.system import open_provider


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``clients`` group to ``commands``."""
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
    add.set_defaults(run=_add)

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
    edit.set_defaults(run=_edit)

    for name, helptext, run in [
        ("show", "show one consumer", _show),
        ("delete", "delete a consumer and revoke its grants", _delete),
        ("reset-secret", "give a consumer a new secret", _reset_secret),
    ]:
        command = sub.add_parser(name, parents=[common], help=helptext)
        command.add_argument("client_id")
        command.set_defaults(run=run)

    listing = sub.add_parser("list", parents=[common], help="list consumers")
    listing.add_argument("--offset", type=_row_count, default=0)
    listing.add_argument("--limit", type=_row_count, default=None)
    listing.set_defaults(run=_list)

    count = sub.add_parser("count", parents=[common], help="count consumers")
    count.set_defaults(run=_count)


def _row_count(text: str) -> int:
    # SQLite and PostgreSQL take 64-bit integers; beyond that is a typo.
    count = int(text) if text.isdigit() else -1
    if not 0 <= count < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count")
    return count


def _add(args: argparse.Namespace, settings: Settings) -> int:
    consumer, secret = open_provider(settings).registry.add(
        args.client_id,
        args.name,
        args.redirect_uri,
        auto_authorize=args.auto_authorize,
    )
    data = {**_consumer_json(consumer), "client_secret": secret}
    say(
        args,
        data,
        f"Registered {consumer.client_id} ({consumer.name}).\n"
        f"client_secret: {secret}\n"
        "Keep the secret now: it is stored only as a hash and not shown again.",
    )
    return 0


def _edit(args: argparse.Namespace, settings: Settings) -> int:
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

    consumer = open_provider(settings).registry.edit(args.client_id, **changes)
    say(args, _consumer_json(consumer), f"Changed {consumer.client_id}.")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    consumer = open_provider(settings).registry.get(args.client_id)
    data = _consumer_json(consumer)
    say(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    if args.offset < 0 or (args.limit is not None and args.limit < 1):
        raise CommandError("--offset must be 0 or more and --limit 1 or more")

    found = open_provider(settings).registry.list(args.offset, args.limit)
    lines = [
        f"{c.client_id}\t{c.name}\t{c.redirect_uri}"
        + ("" if c.enabled else "\tdisabled")
        for c in found
    ]
    say(
        args,
        [_consumer_json(c) for c in found],
        "\n".join(lines) if lines else "No consumers registered.",
    )
    return 0


def _count(args: argparse.Namespace, settings: Settings) -> int:
    count = open_provider(settings).registry.count()
    say(args, {"count": count}, str(count))
    return 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    open_provider(settings).registry.delete(args.client_id)
    say(
        args,
        {"deleted": args.client_id},
        f"Deleted {args.client_id}; its grants and tokens are revoked.",
    )
    return 0


def _reset_secret(args: argparse.Namespace, settings: Settings) -> int:
    secret = open_provider(settings).registry.reset_secret(args.client_id)
    say(
        args,
        {"client_id": args.client_id, "client_secret": secret},
        f"client_secret: {secret}\nThe old secret no longer works.",
    )
    return 0


def _consumer_json(consumer: Consumer) -> dict[str, Any]:
    return dataclasses.asdict(consumer)
