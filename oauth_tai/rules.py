"""Which requests the middleware intercepts, and what their tokens must carry.

Rules are tried in order and the first that matches a request decides; a
request no rule matches, or whose path is excluded, passes through
untouched. A rule's checks (scopes, audience, a user) run on every request
it matches, cache hit or not: the cache holds the provider's answer about
a token, never a decision for a route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from oauth_tai.bearer import InsufficientScope, InvalidToken
from oauth_tai.identity import Identity


@dataclass(frozen=True, slots=True)
class InterceptRule:
    """One kind of request that needs (or may carry) a bearer token.

    :param prefix: the path must start with this.
    :param pattern: if set, a regular expression the path must match from
        its start (``re.match``).
    :param methods: the HTTP methods the rule covers; empty means all.
    :param scopes: scopes the token must carry, else 403.
    :param oauth_only: refuse a request without a token (401); when false,
        such a request passes through untouched so that another
        authentication can take it.
    :param require_user: refuse a consumer-only token (client credentials)
        with 403.
    :param audience: if set, a value the token's ``aud`` must include.
    :param issuer: if set, the token's ``iss``, exactly.

    ::

        InterceptRule("/api/admin/", scopes=frozenset({"admin"}))
    """

    prefix: str = "/"
    pattern: str | None = None
    methods: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    oauth_only: bool = True
    require_user: bool = False
    audience: str | None = None
    issuer: str | None = None
    _regex: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    prefix_only: bool = field(init=False, repr=False, compare=False, default=True)
    # Whether check() can refuse anything: most rules ask for a token only.
    demands: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "_regex", re.compile(self.pattern))
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        object.__setattr__(
            self, "prefix_only", self.pattern is None and not self.methods
        )
        # Anything but the plain defaults demands a check, a subclass's own
        # check() included: a rule skips its check only when it is certain
        # the check cannot refuse.
        object.__setattr__(
            self,
            "demands",
            self.scopes != frozenset()
            or self.require_user
            or self.audience is not None
            or self.issuer is not None
            or type(self).check is not InterceptRule.check,
        )

    def matches(self, path: str, method: str) -> bool:
        if not path.startswith(self.prefix):
            return False
        if self.methods and method not in self.methods:
            return False
        return self._regex is None or self._regex.match(path) is not None

    def check(self, identity: Identity) -> None:
        """Raise the refusal this rule makes of ``identity``, if any."""
        if self.require_user and identity.user is None:
            raise InsufficientScope("this resource acts for a user")

        if self.audience is not None and self.audience not in identity.audiences:
            raise InvalidToken("the access token is not meant for this resource")

        if self.issuer is not None and identity.issuer != self.issuer:
            raise InvalidToken("the access token comes from another issuer")

        if not self.scopes <= identity.scopes:
            raise InsufficientScope("the access token lacks a scope", self.scope)

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))


class InterceptPolicy:
    """An ordered list of rules and the path prefixes excluded from all.

    :param rules: tried in order; the first match decides.
    :param exclude: path prefixes that are never intercepted.
    """

    def __init__(
        self, rules: Sequence[InterceptRule], exclude: Iterable[str] = ()
    ) -> None:
        self.rules = tuple(rules)
        self.exclude = tuple(exclude)
        # Most requests miss every rule: one startswith over all prefixes
        # rejects them before any rule is looked at.
        self._prefixes = tuple(rule.prefix for rule in self.rules)
        # A policy of one bare prefix, the commonest, decides in one step.
        self._only = (
            self.rules[0]
            if len(self.rules) == 1 and self.rules[0].prefix_only and not self.exclude
            else None
        )

    @classmethod
    def for_prefixes(cls, prefixes: Iterable[str]) -> InterceptPolicy:
        return cls([InterceptRule(prefix) for prefix in prefixes])

    def match(self, path: str, method: str) -> InterceptRule | None:
        """Return the rule that decides this request, or ``None``."""
        if self._only is not None:
            return self._only if path.startswith(self._only.prefix) else None
        if not path.startswith(self._prefixes):
            return None
        if self.exclude and path.startswith(self.exclude):
            return None

        for rule in self.rules:
            # Most rules are a bare prefix: those need no method call.
            if path.startswith(rule.prefix) and (
                rule.prefix_only or rule.matches(path, method)
            ):
                return rule
        return None
