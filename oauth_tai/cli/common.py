"""What the command groups share: their error, shared options, and printing."""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from oauth_tai.errors import OAuthTaiError


class CommandError(OAuthTaiError):
    """A command cannot do what it was asked; its message is for the user."""


GATEWAY_DEFAULT: Final = "default /"


def policy_options(default: str = GATEWAY_DEFAULT) -> argparse.ArgumentParser:
    """The gateway's path rules; check-token takes the same to judge as it.

    :param default: what ``--prefix``'s help says is judged without it.
    """
    policy = argparse.ArgumentParser(add_help=False)
    policy.add_argument(
        "--prefix",
        action="append",
        default=[],
        help=f"paths under PREFIX need a token (repeatable; {default})",
    )
    policy.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PREFIX",
        help="paths under PREFIX never need one (repeatable)",
    )
    return policy


def say(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON when the command was given ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    else:
        print(text)
