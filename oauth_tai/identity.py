"""The identity the middleware hands to the application behind it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENVIRON_KEY = "oauth_tai.identity"


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified user acting through a consumer, as the provider vouched.

    ``token_hash`` is a short keyed hash of the token, fit for logs; the
    token itself is never kept here.
    """

    user: str | None
    consumer_id: str
    consumer_name: str
    scopes: frozenset[str]
    expires_at: int
    token_hash: str

    def has_scopes(self, required: frozenset[str]) -> bool:
        return required <= self.scopes


def identity_from_answer(answer: Mapping[str, Any], token_hash: str) -> Identity | None:
    """Map an RFC 7662 introspection answer to an :class:`Identity`.

    Returns ``None`` unless the answer is active (JSON ``true``), names a
    consumer and carries an integer expiry: an answer that cannot be read
    is treated as an inactive token.
    """
    if answer.get("active") is not True:
        return None

    consumer_id = answer.get("client_id")
    expires_at = answer.get("exp")
    if not isinstance(consumer_id, str) or not consumer_id:
        return None
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        return None

    user = answer.get("username", answer.get("sub"))
    if not isinstance(user, str) or not user:
        user = None

    name = answer.get("client_name")
    scope = answer.get("scope", "")
    scopes = scope.split() if isinstance(scope, str) else []
    return Identity(
        user=user,
        consumer_id=consumer_id,
        consumer_name=name if isinstance(name, str) else consumer_id,
        scopes=frozenset(scopes),
        expires_at=expires_at,
        token_hash=token_hash,
    )


def get_identity(environ: Mapping[str, Any]) -> Identity | None:
    """Return the identity the middleware verified for this request, if any."""
    identity = environ.get(ENVIRON_KEY)
    return identity if isinstance(identity, Identity) else None
