"""Generating and hashing the provider's secrets.

Client secrets and passwords are stored as scrypt hashes, compared in
constant time. Tokens and codes carry 256 bits of entropy, so one SHA-256
pass is enough to store them without making a stolen table useful.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache
from typing import Final

# scrypt cost: about 50 ms and 16 MiB per hash on a current core, slow
# enough to make offline guessing expensive without slowing a login.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_SALT_BYTES: Final = 16


def new_secret() -> str:
    """Return a new random secret or token: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_hash(token: str) -> str:
    """Return the hex SHA-256 of a token, the form in which it is stored."""
    return token_digest(token).hex()


def hash_secret(secret: str) -> str:
    """Return a salted scrypt hash of ``secret`` with its parameters."""
    salt = secrets.token_bytes(_SALT_BYTES)
    derived = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        [
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            _b64(salt),
            _b64(derived),
        ]
    )


def verify_secret(secret: str, stored: str) -> bool:
    """Tell whether ``secret`` matches ``stored``; a garbled hash never does."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        derived = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False

    return hmac.compare_digest(derived, _unb64(expected))


def burn_verify(secret: str) -> None:
    """Spend the time of a real check against nothing.

    Used when the name is unknown, so that timing does not tell which
    consumer ids or user names exist.
    """
    verify_secret(secret, _dummy_hash())


@cache
def _dummy_hash() -> str:
    return hash_secret(new_secret())


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
