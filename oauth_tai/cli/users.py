"""``oauth-tai users``: the built-in user directory."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from oauth_tai.cli.common import CommandError, say
from oauth_tai.settings import Settings
from oauth_tai.system import open_provider


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``users`` group to ``commands``."""
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
    add.set_defaults(run=_add)

    listing = sub.add_parser("list", parents=[common], help="list users")
    listing.set_defaults(run=_list)

    delete = sub.add_parser("delete", parents=[common], help="delete a user")
    delete.add_argument("username")
    delete.set_defaults(run=_delete)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password on standard input")

    open_provider(settings).users.add(args.username, password)
    say(args, {"username": args.username}, f"Added user {args.username}.")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    names = open_provider(settings).users.list()
    say(args, names, "\n".join(names) if names else "No users.")
    return 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    open_provider(settings).users.delete(args.username)
    say(args, {"deleted": args.username}, f"Deleted user {args.username}.")
    return 0
