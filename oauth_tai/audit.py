"""The audit trail: who did what to which consumer, grant or token.

What an administrator or a security team asks about later is logged at
INFO on its own logger, ``oauth_tai.audit``, so that it can be routed and
kept apart from the rest of the log. It is on whatever the log level:
:func:`oauth_tai.logs.configure_logging` keeps this logger at INFO.

Each line is one event, named in ``snake_case``, with who did it (``by``:
``user``, ``consumer``, ``administrator`` or ``provider``), the user, the
consumer's id and a short hash of the token where there is one. A token,
a secret or a password never appears: the hash is the one the middleware
logs and puts in :class:`~oauth_tai.identity.Identity`, so a refused
request can be traced to the grant that issued its token. In text format
the fields are ``key=value`` pairs; in JSON format each is a key of the
line's object.

The events: ``consumer_registered``, ``consumer_edited``,
``consumer_disabled``, ``consumer_enabled``, ``consumer_secret_reset``,
``consumer_deleted``, ``user_added``, ``user_deleted``,
``consent_granted``, ``consent_denied``, ``token_issued``,
``token_refreshed``, ``token_revoked``, ``access_revoked`` (a user on
Application Access) and ``grant_revoked`` (the provider, on a replayed
code or a reused refresh token).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Final

AUDIT_LOGGER: Final = "oauth_tai.audit"

# Who did it.
BY_USER: Final = "user"
BY_CONSUMER: Final = "consumer"
BY_ADMINISTRATOR: Final = "administrator"
BY_PROVIDER: Final = "provider"

# The attribute of a log record that holds the event's fields, for the
# JSON formatter.
FIELDS_ATTRIBUTE: Final = "audit"

logger = logging.getLogger(AUDIT_LOGGER)

# Values shown bare in text lines; anything else (spaces, quotes, "=",
# control characters) is shown as a JSON string, so a line cannot be
# forged by a name that holds a newline.
_BARE = re.compile(r"[A-Za-z0-9._~@:/+,-]+")


def audit(
    event: str,
    *,
    by: str,
    user: str | None = None,
    consumer: str | None = None,
    token: str | None = None,
    **details: str | int | bool,
) -> None:
    """Log one audit event; fields that are ``None`` are left out.

    :param by: who did it: :data:`BY_USER`, :data:`BY_CONSUMER`,
        :data:`BY_ADMINISTRATOR` or :data:`BY_PROVIDER`.
    :param token: the token's short hash, never the token.
    :param details: more fields, such as ``scope`` or ``grants``.
    """
    fields: dict[str, str | int | bool] = {"event": event, "by": by}
    for name, value in (("user", user), ("consumer", consumer), ("token", token)):
        if value is not None:
            fields[name] = value
    fields.update(details)

    logger.info("%s", _Line(fields), extra={FIELDS_ATTRIBUTE: fields}, stacklevel=2)


class _Line:
    """The text form of an event, rendered only if a handler writes it."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, str | int | bool]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{k}={_show(v)}" for k, v in self.fields.items())


def _show(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text)
