"""Generating and hashing the provider's secrets.

How a secret is stored depends on how hard it is to guess:

- **Tokens, codes and session ids** carry 256 random bits. The store keeps
  one SHA-256 of each (:func:`token_hash`).
- **Client secrets we generated** (:func:`new_secret`, 256 random bits) are
  stored as ``sha256$<digest>`` (:func:`hash_client_secret`). Nobody can
  search 2**256 candidates, so a slow hash would add no protection to a
  stolen table, while it costs 30 to 45 ms and 16 MiB on every token
  request and every introspection call. The digest is not keyed with
  ``OAUTH_TAI_SECRET_KEY``: a pepper adds nothing at this entropy, and it
  would tie every consumer's secret to a key that the documentation lets
  administrators rotate freely and that an ``oauth-tai clients`` command
  run without it would silently generate anew.
- **Passwords**, which people choose, and any client secret that does not
  have the shape of one we generated, are stored as salted scrypt hashes,
  ``scrypt$N$r$p$salt$hash`` (:func:`hash_password`).

Every comparison is made in constant time. Earlier versions stored every
client secret with scrypt, and databases still hold such hashes:
:func:`verify_client_secret` accepts both schemes, and
:func:`upgraded_client_hash` gives the fast hash that should replace a
legacy one once the secret is known to match it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from functools import cache
from typing import Final

# scrypt cost: about 50 ms and 16 MiB per hash on a current core, slow
# enough to make offline guessing expensive without slowing a login.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_SALT_BYTES: Final = 16
_SECRET_BYTES: Final = 32

SCRYPT: Final = "scrypt"
SHA256: Final = "sha256"

# What new_secret makes: 32 random bytes as unpadded URL-safe base64, 43
# characters. Only a secret of this shape is stored with the fast scheme.
_GENERATED: Final = re.compile(r"[A-Za-z0-9_-]{43,}")


def new_secret() -> str:
    """Return a new random secret or token: 256 bits, URL-safe."""
    return secrets.token_urlsafe(_SECRET_BYTES)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_hash(token: str) -> str:
    """Return the hex SHA-256 of a token, the form in which it is stored."""
    return token_digest(token).hex()


# -- client secrets -------------------------------------------------------------


def hash_client_secret(secret: str) -> str:
    """Return the stored form of a consumer's secret.

    A secret with the shape of :func:`new_secret` gets one SHA-256; any
    other (an administrator's choice, or one from another system) gets
    scrypt, because its entropy is unknown.
    """
    # Today every consumer secret is generated here: no command takes one
    # from an administrator. Should one ever do so, or for a legacy secret
    # of unknown origin, scrypt keeps it as safe as a password rather than
    # refusing it, which would lock out a consumer whose secret works.
    if not _is_generated(secret):
        return hash_password(secret)

    return f"{SHA256}${_b64(hashlib.sha256(secret.encode()).digest())}"


def verify_client_secret(secret: str, stored: str) -> bool:
    """Tell whether ``secret`` matches a client secret's stored hash.

    Accepts the fast scheme and the scrypt hashes of earlier versions; an
    unknown scheme or a garbled hash never matches.
    """
    scheme, _, rest = stored.partition("$")
    if scheme == SCRYPT:
        return verify_password(secret, stored)
    if scheme != SHA256:
        return False

    try:
        expected = _unb64(rest)
        digest = hashlib.sha256(secret.encode()).digest()
    except ValueError:
        return False

    return hmac.compare_digest(digest, expected)


def upgraded_client_hash(secret: str, stored: str) -> str | None:
    """Return the fast hash to store instead of ``stored``, or ``None``.

    Call it only after ``secret`` matched ``stored``. A legacy scrypt hash
    of a secret we generated is replaced; the hash of any other secret,
    whose entropy is unknown, stays on scrypt.
    """
    if not stored.startswith(SCRYPT + "$") or not _is_generated(secret):
        return None

    return hash_client_secret(secret)


def burn_client_secret_check(secret: str) -> None:
    """Spend the time of checking a client secret, against nothing.

    Used when the consumer id is unknown, so that timing does not tell
    which ids exist: the same code runs on a hash of the same scheme.
    """
    verify_client_secret(secret, _dummy_client_hash())


@cache
def _dummy_client_hash() -> str:
    return hash_client_secret(new_secret())


def _is_generated(secret: str) -> bool:
    return _GENERATED.fullmatch(secret) is not None


# -- passwords ------------------------------------------------------------------


def hash_password(password: str) -> str:
    """Return a salted scrypt hash of ``password`` with its parameters."""
    salt = secrets.token_bytes(_SALT_BYTES)
    derived = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        [
            SCRYPT,
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            _b64(salt),
            _b64(derived),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    """Tell whether ``password`` matches a scrypt hash; a garbled one never does."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != SCRYPT:
            return False
        derived = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(derived, _unb64(expected))
    except (ValueError, TypeError, OverflowError):
        # hashlib.scrypt raises TypeError for a negative or oversized n.
        return False


def burn_password_check(password: str) -> None:
    """Spend the time of a real password check against nothing.

    Used when the user name is unknown, so that timing does not tell
    which users exist.
    """
    verify_password(password, _dummy_password_hash())


@cache
def _dummy_password_hash() -> str:
    return hash_password(new_secret())


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
