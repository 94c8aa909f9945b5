"""Fetching and keeping a provider's signing keys, published as a JWKS.

Keys come only from the configured URL (RFC 7517), never from a token. A
key set is fetched on first use, refreshed every few minutes, refetched at
most once a window for a kid it does not know, and kept for a while when
the provider cannot be reached, so that a short outage costs nothing.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
import urllib3
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import AllowedPublicKeys, ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from oauth_tai.errors import ProviderUnavailable
from oauth_tai.metrics import JWKS_ERRORS, JWKS_SECONDS

logger = logging.getLogger(__name__)

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

# As for introspection: one pooled connection per worker thread is enough.
POOL_SIZE: Final = 10

# Each algorithm a key may verify, and the key type (and curves) it needs.
# Only asymmetric algorithms appear: an HS256 token "signed" with a
# published public key could otherwise pass (RFC 8725 §2.1, §3.1).
KEY_TYPES: Final[Mapping[str, tuple[str, frozenset[str | None]]]] = {
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


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A public key from a JWKS, with what the JWKS says about its use."""

    kty: str
    crv: str | None
    alg: str | None
    public: AllowedPublicKeys

    def fits(self, alg: str) -> bool:
        """Tell whether this key may verify a signature made with ``alg``."""
        kty, curves = KEY_TYPES[alg]
        # RFC 7517 §4.4: a key that names its algorithm is for that one only.
        return self.kty == kty and self.crv in curves and self.alg in (None, alg)


Keys = dict[str | None, SigningKey]


class JwksClient:
    """Fetch JWKS documents over a shared connection pool.

    :param timeout: connect and read timeout, in seconds.
    """

    def __init__(self, timeout: float = 2.0) -> None:
        self._pool = urllib3.PoolManager(
            maxsize=POOL_SIZE,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
        )

    def fetch(self, url: str) -> Keys:
        """Return the usable signing keys published at ``url``, by kid.

        Raises :class:`ProviderUnavailable` when the URL cannot be reached,
        does not answer 200, or holds no usable signing key.
        """
        try:
            with JWKS_SECONDS.time():
                return self._fetch(url)
        except ProviderUnavailable:
            JWKS_ERRORS.inc()
            raise

    def _fetch(self, url: str) -> Keys:
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

        keys = parse_jwks(data)
        if not keys:
            raise ProviderUnavailable("the JWKS holds no usable signing key")

        return keys


class KeySet:
    """One issuer's signing keys: fetched on first use, refreshed on schedule.

    :param url: where the issuer publishes its JWKS.
    :param fetch: what fetches it (:meth:`JwksClient.fetch`).
    :param clock: monotonic seconds.
    """

    def __init__(
        self, url: str, fetch: Callable[[str], Keys], clock: Callable[[], float]
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._clock = clock
        # Replaced whole, never mutated: readers without the lock see either
        # the old pair or the new one.
        self._current: tuple[Keys, float] = ({}, -math.inf)
        self._next_fetch = -math.inf
        self._failure: str | None = None
        self._lock = threading.Lock()

    def find(self, kid: str | None, alg: str) -> SigningKey | None:
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

    def _find_locked(self, kid: str | None) -> SigningKey | None:
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
                self._next_fetch = now + JWKS_REFETCH_INTERVAL
                if not fresh and key is not None:
                    # A scheduled fetch that found its kid leaves the next
                    # unknown kid its one refetch; any other fetch spends it.
                    self._next_fetch = now
                return key

        if now - fetched_at >= JWKS_MAX_STALE:
            raise ProviderUnavailable(self._failure or "no JWKS fetched yet")

        key = _pick(keys, kid)
        if key is None and self._failure is not None:
            # The kid may be a new key the provider published while we
            # could not look: we cannot tell, so the consumer keeps its token.
            raise ProviderUnavailable(self._failure)

        return key


def _pick(keys: Keys, kid: str | None) -> SigningKey | None:
    if kid is None and len(keys) == 1:
        # RFC 7515 §4.1.4: kid is optional; with one key there is no choice.
        return next(iter(keys.values()))

    return keys.get(kid) if kid is not None else None


def parse_jwks(data: Any) -> Keys:
    """Return the usable signing keys of a JWKS by kid, skipping the rest."""
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return {}

    keys: Keys = {}
    for entry in entries:
        key = _parse_jwk(entry)
        kid = entry.get("kid") if key is not None else None
        if key is not None and (kid is None or isinstance(kid, str)):
            keys.setdefault(kid, key)

    return keys


def _parse_jwk(entry: Any) -> SigningKey | None:
    if not isinstance(entry, dict):
        return None

    # RFC 7517 §4.2: a key published for encryption does not sign. A key
    # published with its private part ("d") is a provider's mistake: skip it.
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

    return SigningKey(
        kty=kty,
        crv=crv if isinstance(crv, str) else None,
        alg=alg if isinstance(alg, str) else None,
        public=public,
    )
