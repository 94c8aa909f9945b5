"""Validating RFC 9068 JWT access tokens with the keys their issuer publishes.

Use it when the provider issues self-contained JWT access tokens and
publishes its signing keys as a JWKS: a token is then checked here, without
a call to the provider per token.

What it trusts: the keys in the JWKS of each configured issuer, fetched
from the URL configured for that issuer (:mod:`oauth_tai.validators.jwks`),
and nothing the token says about keys. The token's unverified ``iss`` only
chooses which issuer's keys and audience to check it against; its ``kid``
only chooses a key in that set; ``jku``, ``jwk`` and ``x5u`` header
parameters are ignored. Only asymmetric algorithms are accepted, so no
public key can be misused as an HMAC secret, and ``none`` never is.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

from oauth_tai.cache import LOG_HASH_CHARS
from oauth_tai.errors import ConfigurationError
from oauth_tai.validators.jwks import KEY_TYPES, JwksClient, KeySet

logger = logging.getLogger(__name__)

DEFAULT_ALGORITHMS: Final = ("RS256", "ES256", "PS256", "EdDSA")

# Clock difference forgiven on exp, nbf and iat, in seconds.
DEFAULT_LEEWAY: Final = 30

# RFC 9068 §4: "at+jwt", or the full media type; compared case-insensitively.
_ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})

# RFC 9068 §2.2: the claims every JWT access token carries.
_REQUIRED_CLAIMS: Final = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]


@dataclass(frozen=True, slots=True)
class JwtIssuer:
    """One provider whose JWT access tokens are accepted.

    :param issuer: its issuer identifier, matched exactly against ``iss``.
    :param jwks_url: where it publishes its signing keys.
    :param audience: the value ``aud`` must hold for tokens meant for us.
    :param algorithms: the signature algorithms accepted from it.
    """

    issuer: str
    jwks_url: str
    audience: str
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS


class _Refused(Exception):
    """Why a token is not valid: logged, never shown to the consumer."""


class JwtValidator:
    """Check JWT access tokens (RFC 9068) from one or more issuers.

    :param issuers: the providers to trust; a token is routed to one by its
        ``iss`` claim and checked against that provider's keys only.
    :param leeway: seconds of clock difference allowed for ``exp``,
        ``nbf`` and ``iat``.
    :param timeout: connect and read timeout for a JWKS fetch, in seconds.
    :param clock: monotonic seconds, for the JWKS refresh schedule.

    ::

        validator = JwtValidator(
            [JwtIssuer("https://idp.example", "https://idp.example/jwks", "api")]
        )
    """

    def __init__(
        self,
        issuers: Iterable[JwtIssuer],
        *,
        leeway: int = DEFAULT_LEEWAY,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        client = JwksClient(timeout)
        self._issuers: dict[str, tuple[JwtIssuer, KeySet]] = {}
        for issuer in issuers:
            _check_issuer(issuer)
            if issuer.issuer in self._issuers:
                raise ConfigurationError(f"issuer {issuer.issuer!r} is listed twice")
            keys = KeySet(issuer.jwks_url, client.fetch, clock)
            self._issuers[issuer.issuer] = (issuer, keys)

        if not self._issuers:
            raise ConfigurationError("a JWT validator needs at least one issuer")
        if leeway < 0:
            raise ConfigurationError("the JWT leeway cannot be negative")

        self.leeway = leeway

    def __repr__(self) -> str:
        return f"JwtValidator(issuers={list(self._issuers)!r})"

    def introspect(self, token: str) -> Mapping[str, Any] | None:
        """Return an RFC 7662 answer for a valid JWT access token, else ``None``.

        Raises :class:`~oauth_tai.errors.ProviderUnavailable` when the
        issuer's keys cannot be fetched and none usable are cached.
        """
        try:
            return self._verify(token)
        except _Refused as refusal:
            if logger.isEnabledFor(logging.DEBUG):
                short = hashlib.sha256(token.encode()).hexdigest()[:LOG_HASH_CHARS]
                logger.debug("refused JWT %s: %s", short, refusal)
            return None

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _Refused("not a JWT") from exc

        iss = unverified.get("iss")
        if not isinstance(iss, str) or iss not in self._issuers:
            raise _Refused("unknown issuer")

        issuer, keys = self._issuers[iss]
        _check_header(header, issuer.algorithms)
        alg: str = header["alg"]
        kid = header.get("kid")
        key = keys.find(kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise _Refused("no key for this kid and alg")

        # RFC 9068 §4: signature, then iss exactly, aud, and the times.
        try:
            claims = jwt.decode(
                token,
                key.public,
                algorithms=[alg],
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=self.leeway,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise _Refused(str(exc)) from exc

        return _answer_from_claims(claims)


def _check_header(header: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_TYPES:
        raise _Refused("typ is not at+jwt")  # RFC 9068 §4, step 1

    if header.get("alg") not in allowed:
        raise _Refused("alg not allowed")  # RFC 9068 §4, step 4; RFC 8725 §3.1

    if "crit" in header:
        # RFC 7515 §4.1.11: we implement no extension, so none can be critical.
        raise _Refused("unknown crit")


def _answer_from_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Map verified claims to an RFC 7662 answer; refuse malformed ones."""
    client_id = claims["client_id"]
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(client_id, str) or not client_id:
        raise _Refused("client_id is not a string")
    if not _is_number(exp) or not _is_number(iat):
        raise _Refused("exp or iat is not a number")

    # RFC 8693 §4.2 makes scope a space-separated string; some providers
    # send a list of strings instead.
    scope = claims.get("scope", "")
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scope = " ".join(scope)

    if not isinstance(scope, str):
        raise _Refused("scope is neither a string nor a list of strings")

    sub = claims["sub"]
    username = claims.get("username")
    answer: dict[str, Any] = {
        "active": True,
        "client_id": client_id,
        "username": username if isinstance(username, str) else sub,
        "sub": sub,
        "scope": scope,
        "exp": math.floor(exp),
        "iat": math.floor(iat),
        "jti": claims["jti"],
        "iss": claims["iss"],
        "token_type": "Bearer",
    }
    if isinstance(claims.get("client_name"), str):
        answer["client_name"] = claims["client_name"]

    return answer


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_issuer(issuer: JwtIssuer) -> None:
    if not issuer.issuer:
        raise ConfigurationError("a JWT issuer needs its issuer identifier")
    if not issuer.audience:
        raise ConfigurationError(f"issuer {issuer.issuer!r} needs an audience")
    if not issuer.jwks_url.startswith(("https://", "http://")):
        raise ConfigurationError(f"the JWKS URL of {issuer.issuer!r} must be http(s)")

    refused = [alg for alg in issuer.algorithms if alg not in KEY_TYPES]
    if refused or not issuer.algorithms:
        raise ConfigurationError(
            "JWT algorithms must be asymmetric signatures (RS, PS, ES, EdDSA); "
            f"not {', '.join(refused) or 'an empty list'}"
        )
