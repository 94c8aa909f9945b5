"""The ``oauth-tai`` command: serve, and manage consumers, users, tokens and schema.

This module reads the command line and runs the command; each group of
commands, with its options, lives in a module of its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oauth_tai.cli import clients, operations, serving, storage, users
from oauth_tai.errors import OAuthTaiError
from oauth_tai.logs import configure_logging
from oauth_tai.settings import Settings


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

    # In this order in --help: running first, then managing, then looking in.
    for group in (serving, clients, users, storage, operations):
        group.add_commands(commands, common)
    return parser
