"""Validating RFC 9068 JWT access tokens with the keys their issuer publishes.

Use it when the provider issues self-contained JWT access tokens and
publishes its signing keys as a JWKS (RFC 7517): a token is then checked
here, without a call to the provider per token.

What it trusts: the keys in the JWKS of each configured issuer, fetched
over HTTP(S) from the URL configured for that issuer, and nothing the token
says about keys. The token's unverified ``iss`` only chooses which issuer's
keys and audience to check it against; its ``kid`` only chooses a key in
that set; ``jku``, ``jwk`` and ``x5u`` header parameters are ignored. Only
asymmetric algorithms are accepted, so no public key can be misused as an
HMAC secret, and ``none`` is never accepted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
import urllib3
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import AllowedPublicKeys, ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from oauth_tai.cache import LOG_HASH_CHARS
from oauth_tai.errors import ConfigurationError, ProviderUnavailable

logger = logging.getLogger(__name__)

DEFAULT_ALGORITHMS: Final = ("RS256", "ES256", "PS256", "EdDSA")

# Each accepted algorithm and the key type (and curves) it needs. Only
# asymmetric algorithms appear: an HS256 token "signed" with a published
# public key could otherwise pass (RFC 8725 §2.1, §3.1).
_KEY_TYPES: Final[Mapping[str, tuple[str, frozenset[str | None]]]] = {
    **{alg: ("RSA", frozenset({None})) for alg in ("RS256", "RS384", "RS512")},
    **{alg: ("RSA", frozenset({None})) for alg in ("PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}

_PUBLIC_KEY_TYPES: Final = (
    RSAPublicKey,
    EllipticCurvePublicKey,
    Ed25519PublicKey,
    Ed448PublicKey,
)

# RFC 9068 §4: "at+jwt", or the full media type; compared case-insensitively.
_ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})

# RFC 9068 §2.2: the claims every JWT access token carries.
_REQUIRED_CLAIMS: Final = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]

# An unknown kid can come from anyone: refetch the JWKS for one at most this
# often, so a flood of made-up kids costs the provider one request a window.
JWKS_REFETCH_INTERVAL: Final = 10.0

# Keys are refreshed this often even when every kid is known, so a key the
# provider withdrew stops verifying tokens within this time.
JWKS_MAX_AGE: Final = 300.0

# While the JWKS cannot be fetched, keys this old still verify: enough to
# ride out a provider restart, not enough to keep a withdrawn key alive.
JWKS_MAX_STALE: Final = 3600.0

# A JWKS holds a handful of keys; anything far larger is not one.
MAX_JWKS_BYTES: Final = 1 << 20

POOL_SIZE: Final = 10

DEFAULT_LEEWAY: Final = 30


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


@dataclass(frozen=True, slots=True)
class _Key:
    kty: str
    crv: str | None
    alg: str | None
    public: AllowedPublicKeys

    def fits(self, alg: str) -> bool:
        kty, curves = _KEY_TYPES[alg]
        # RFC 7517 §4.4: a key that names its algorithm is for that one only.
        return self.kty == kty and self.crv in curves and self.alg in (None, alg)


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
        self._pool = urllib3.PoolManager(
            maxsize=POOL_SIZE,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
        )
        self._issuers: dict[str, tuple[JwtIssuer, _KeySet]] = {}
        for issuer in issuers:
            _check_issuer(issuer)
            if issuer.issuer in self._issuers:
                raise ConfigurationError(f"issuer {issuer.issuer!r} is listed twice")
            keys = _KeySet(issuer.jwks_url, self._fetch_keys, clock)
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

        Raises :class:`ProviderUnavailable` when the issuer's keys cannot be
        fetched and none usable are cached.
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

    def _fetch_keys(self, url: str) -> dict[str | None, _Key]:
        try:
            response = self._pool.request(
                "GET",
                url,
                headers={"Accept": "application/json"},
                preload_content=False,
            )
            try:
                body = response.read(MAX_JWKS_BYTES + 1)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderUnavailable(
                f"JWKS fetch failed: {type(exc).__name__}"
            ) from exc

        if response.status != 200:
            raise ProviderUnavailable(f"the JWKS answered {response.status}")
        if len(body) > MAX_JWKS_BYTES:
            raise ProviderUnavailable("the JWKS is too large")

        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ProviderUnavailable("the JWKS is not JSON") from exc

        keys = _parse_jwks(data)
        if not keys:
            raise ProviderUnavailable("the JWKS holds no usable signing key")

        return keys


class _KeySet:
    """One issuer's signing keys: fetched on first use, refreshed on schedule."""

    def __init__(
        self,
        url: str,
        fetch: Callable[[str], dict[str | None, _Key]],
        clock: Callable[[], float],
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._clock = clock
        # Replaced whole, never mutated: readers without the lock see either
        # the old pair or the new one.
        self._current: tuple[dict[str | None, _Key], float] = ({}, -math.inf)
        self._next_fetch = -math.inf
        self._failure: str | None = None
        self._lock = threading.Lock()

    def find(self, kid: str | None, alg: str) -> _Key | None:
        """Return the key named ``kid`` if it fits ``alg``, else ``None``.

        Raises :class:`ProviderUnavailable` when the keys cannot be fetched
        and none usable are cached, or when a kid is unknown and the refetch
        that could have found it failed.
        """
        keys, fetched_at = self._current
        if self._clock() - fetched_at < JWKS_MAX_AGE:
            key = _pick(keys, kid)
            if key is not None:
                return key if key.fits(alg) else None

        # Held across the fetch on purpose: it makes the fetch single-flight,
        # and threads waiting here need its result anyway. The path above,
        # taken for every known kid, never waits for it.
        with self._lock:
            key = self._find_locked(kid)

        return key if key is not None and key.fits(alg) else None

    def _find_locked(self, kid: str | None) -> _Key | None:
        now = self._clock()
        keys, fetched_at = self._current
        fresh = now - fetched_at < JWKS_MAX_AGE
        if fresh:
            key = _pick(keys, kid)
            if key is not None:
                return key

        if now >= self._next_fetch:
            try:
                keys = self._fetch(self.url)
            except ProviderUnavailable as exc:
                self._failure = exc.reason
                self._next_fetch = now + JWKS_REFETCH_INTERVAL
                logger.warning("cannot fetch the JWKS at %s: %s", self.url, exc)
            else:
                self._current = (keys, now)
                self._failure = None
                key = _pick(keys, kid)
                # A scheduled fetch that found its kid leaves the next
                # unknown kid its one refetch; any other fetch spends it.
                found_on_schedule = not fresh and key is not None
                self._next_fetch = (
                    now if found_on_schedule else (now + JWKS_REFETCH_INTERVAL)
                )
                return key

        if now - fetched_at >= JWKS_MAX_STALE:
            raise ProviderUnavailable(self._failure or "no JWKS fetched yet")

        key = _pick(keys, kid)
        if key is None and self._failure is not None:
            # The kid may be a new key the provider published while we
            # could not look: we cannot tell, so the consumer keeps its token.
            raise ProviderUnavailable(self._failure)

        return key


def _pick(keys: dict[str | None, _Key], kid: str | None) -> _Key | None:
    if kid is None and len(keys) == 1:
        # RFC 7515 §4.1.4: kid is optional; with one key there is no choice.
        return next(iter(keys.values()))

    return keys.get(kid) if kid is not None else None


def _parse_jwks(data: Any) -> dict[str | None, _Key]:
    """Return the usable signature keys of a JWKS, by kid; skip the rest."""
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return {}

    keys: dict[str | None, _Key] = {}
    for entry in entries:
        key = _parse_jwk(entry)
        kid = entry.get("kid") if key is not None else None
        if key is not None and (kid is None or isinstance(kid, str)):
            keys.setdefault(kid, key)

    return keys


def _parse_jwk(entry: Any) -> _Key | None:
    if not isinstance(entry, dict):
        return None

    # RFC 7517 §4.2: a key published for encryption does not sign.
    if entry.get("use", "sig") != "sig" or "d" in entry:
        return None

    kty, crv, alg = entry.get("kty"), entry.get("crv"), entry.get("alg")
    algorithm: type[RSAAlgorithm] | type[ECAlgorithm] | type[OKPAlgorithm]
    if kty == "RSA":
        algorithm = RSAAlgorithm
    elif kty == "EC":
        algorithm = ECAlgorithm
    elif kty == "OKP":
        algorithm = OKPAlgorithm
    else:
        return None

    try:
        public = algorithm.from_jwk(entry)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        public = None
    if not isinstance(public, _PUBLIC_KEY_TYPES):
        logger.warning("skipping a JWKS key that cannot be read: %r", entry.get("kid"))
        return None

    return _Key(
        kty=kty,
        crv=crv if isinstance(crv, str) else None,
        alg=alg if isinstance(alg, str) else None,
        public=public,
    )


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

    scope = claims.get("scope", "")
    # RFC 8693 §4.2 makes scope a string; some providers send a list.
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scope = " ".join(scope)
    if not isinstance(scope, str):
        raise _Refused("scope is neither a string nor a list of strings")

    sub = claims["sub"]
    username = claims.get("username", sub)
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

    refused = [alg for alg in issuer.algorithms if alg not in _KEY_TYPES]
    if refused or not issuer.algorithms:
        raise ConfigurationError(
            "JWT algorithms must be asymmetric signatures (RS, PS, ES, EdDSA); "
            f"not {', '.join(refused) or 'an empty list'}"
        )
