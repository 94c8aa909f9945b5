"""``oauth-tai check-token`` and ``settings``: looking into a running setup."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from oauth_tai.cli.common import CommandError, policy_options, say
from oauth_tai.settings import Settings

# Without --prefix or --exclude, check-token judges as serve does
# (oauth_tai.checktoken.policy_for).
CHECK_TOKEN_DEFAULT = (
    "default: serve's rule, every /connections/APP/oauth/ path, "
    "or / when --exclude is given"
)


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``check-token`` and ``settings`` to ``commands``."""
    check = commands.add_parser(
        "check-token",
        parents=[common, policy_options(CHECK_TOKEN_DEFAULT)],
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
    say(args, explanation.to_json(), explanation.to_text())
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
    say(args, values, "\n".join(f"{k} = {v!r}" for k, v in values.items()))
    return 0
