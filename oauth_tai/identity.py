"""The identity the middleware hands to the application behind it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

ENVIRON_KEY = "oauth_tai.identity"

# The headers that carry an identity to services behind the gateway. A
# client must never be able to send them: the middleware and the gateway
# remove them from every request.
IDENTITY_HEADERS = (
    "X-Auth-User",
    "X-Auth-Consumer",
    "X-Auth-Consumer-Name",
    "X-Auth-Scope",
)


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
    audiences: frozenset[str] = frozenset()
    issuer: str | None = None

    def has_scopes(self, required: frozenset[str]) -> bool:
        return required <= self.scopes


DEFAULT_USER_CLAIMS = ("username", "sub")


def identity_from_answer(
    answer: Mapping[str, Any],
    token_hash: str,
    user_claims: Sequence[str] = DEFAULT_USER_CLAIMS,
) -> Identity | None:
    """Map an RFC 7662 introspection answer to an :class:`Identity`.

    Returns ``None`` unless the answer is active (JSON ``true``), names a
    consumer, carries an integer expiry in seconds and a well-formed scope
    and audience: an answer that cannot be read is an inactive token.

    :param user_claims: the claims tried in order for the user's name.
    """
    if answer.get("active") is not True:
        return None

    consumer_id = answer.get("client_id")
    expires_at = answer.get("exp")
    if not isinstance(consumer_id, str) or not consumer_id:
        return None
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        return None

    scopes = _strings(answer.get("scope"), split=True)
    audiences = _strings(answer.get("aud"), split=False)
    if scopes is None or audiences is None:
        return None

    user = next(
        (v for c in user_claims if isinstance(v := answer.get(c), str) and v), None
    )
    name = answer.get("client_name")
    issuer = answer.get("iss")
    return Identity(
        user=user,
        consumer_id=share(consumer_id),
        consumer_name=share(name if isinstance(name, str) else consumer_id),
        scopes=share(frozenset(scopes)),
        expires_at=expires_at,
        token_hash=token_hash,
        audiences=share(frozenset(audiences)),
        issuer=share(issuer) if isinstance(issuer, str) else None,
    )


# Thousands of cached identities name the same few consumers, scope sets
# and issuers: each identity points at one shared copy instead of its own.
# The values come from the provider, not from clients, so they are few;
# the bound only guards against a provider that says otherwise.
_T = TypeVar("_T", str, frozenset[str])
_SHARED: dict[object, Any] = {}
_SHARED_LIMIT = 4096


def share(value: _T) -> _T:
    """Return the one copy of ``value`` kept for every identity that holds it."""
    kept = _SHARED.get(value)
    if kept is None:
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()
        _SHARED[value] = kept = value
    return kept


def _strings(value: Any, *, split: bool) -> list[str] | None:
    # RFC 7662 §2.2 sends scope as one space-separated string and aud as a
    # string or a list; a list of strings is taken for either. Anything
    # else is unreadable (None).
    if value is None:
        return []
    if isinstance(value, str):
        return value.split() if split else [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def get_identity(environ: Mapping[str, Any]) -> Identity | None:
    """Return the identity the middleware verified for this request, if any."""
    identity = environ.get(ENVIRON_KEY)
    return identity if isinstance(identity, Identity) else None
