"""``oauth-tai db`` and ``tokens``: the database's schema and its expired rows."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from oauth_tai.cli.common import say
from oauth_tai.database import connect_database
from oauth_tai.migrations import LATEST, MIGRATIONS, current_version, upgrade
from oauth_tai.settings import Settings
from oauth_tai.system import open_provider


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``db`` and ``tokens`` groups to ``commands``."""
    database = commands.add_parser("db", help="manage the database schema")
    database.set_defaults(help_parser=database)
    sub = database.add_subparsers(title="commands", metavar="COMMAND")

    upgrading = sub.add_parser(
        "upgrade",
        parents=[common],
        help="bring the schema up to date (every command does it first too)",
    )
    upgrading.set_defaults(run=_db_upgrade)

    version = sub.add_parser(
        "version",
        parents=[common],
        help="show the schema version and the steps an upgrade would take",
    )
    version.set_defaults(run=_db_version)

    tokens = commands.add_parser("tokens", help="manage stored tokens")
    tokens.set_defaults(help_parser=tokens)
    tokens_commands = tokens.add_subparsers(title="commands", metavar="COMMAND")
    purge = tokens_commands.add_parser(
        "purge", parents=[common], help="delete expired codes and tokens"
    )
    purge.set_defaults(run=_tokens_purge)


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
    say(args, dataclasses.asdict(done), text)
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
    say(args, data, text)
    return 0


def _tokens_purge(args: argparse.Namespace, settings: Settings) -> int:
    gone = open_provider(settings).store.purge()
    say(args, {"purged": gone}, f"Purged {gone} expired codes and tokens.")
    return 0
