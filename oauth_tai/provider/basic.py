"""Reading HTTP Basic credentials (RFC 7617), tolerantly."""

from __future__ import annotations

import base64
import binascii


def parse_basic(header: str) -> tuple[str, str] | None:
    """Return the name and password of a Basic ``Authorization`` value.

    Returns ``None`` for another scheme, bad base64, bytes that are not
    UTF-8 or a pair without a colon: the caller refuses all of these alike.
    """
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None

    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None

    name, colon, password = decoded.partition(":")
    if not colon:
        return None
    return name, password
