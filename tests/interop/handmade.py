"""JWTs built by hand, for what no JOSE library will sign.

Each function returns a compact JWS (RFC 7515 §7.1): base64url header,
payload and signature joined by dots.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return (
        b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    )


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An unsecured JWS: ``alg`` ``none`` and an empty signature (RFC 7519 §6)."""
    return signing_input({**header, "alg": "none"}, claims) + "."


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token whose HMAC key is ``secret``, whatever that is."""
    data = signing_input({**header, "alg": "HS256"}, claims)
    mac = hmac.new(secret, data.encode(), hashlib.sha256).digest()
    return data + "." + b64url(mac)


def rs256(
    header: dict[str, Any], claims: dict[str, Any], key: rsa.RSAPrivateKey
) -> str:
    """A genuine RS256 signature over any header, even ones libraries refuse."""
    data = signing_input({**header, "alg": "RS256"}, claims)
    signature = key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
    return data + "." + b64url(signature)


def tamper(token: str, **changes: Any) -> str:
    """Change claims in a signed token and keep its original signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return header + "." + b64url(json.dumps(claims).encode()) + "." + signature
