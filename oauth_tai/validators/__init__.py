"""What the middleware asks about a token when no cache tier knows it.

A validator answers in RFC 7662 terms: a mapping with ``"active": True``
and the token's claims, or ``None`` for a token that is not active. It
raises :class:`~oauth_tai.errors.ProviderUnavailable` when it cannot tell.
Anything with an ``introspect`` method of that shape will do::

    class Fixed:
        def introspect(self, token: str) -> Mapping[str, Any] | None:
            return {"active": True, "client_id": "app", "exp": 2**31}
"""

from collections.abc import Mapping
from typing import Any, Protocol


class TokenValidator(Protocol):
    """Answer whether a token is active, and for whom."""

    def introspect(self, token: str) -> Mapping[str, Any] | None: ...
