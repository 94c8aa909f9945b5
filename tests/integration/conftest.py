"""Tokens from the real provider store, for the apps behind the middleware."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

from oauth_tai.provider.store import TokenStore
from oauth_tai.system import Provider

CLIENT_ID = "notes-app"
CLIENT_NAME = "Notes App"
USER = "alice"
NARROW_USER = "bob"


@dataclass
class Tokens:
    """Access tokens the provider's store issued, and the store itself."""

    store: TokenStore
    good: str
    narrow: str


@pytest.fixture
def tokens(provider: Provider) -> Tokens:
    """A token of alice's with ``connections``, and one of bob's without."""
    provider.registry.add(CLIENT_ID, CLIENT_NAME, "http://127.0.0.1:9/cb")
    good, narrow = secrets.token_urlsafe(32), secrets.token_urlsafe(32)

    grant = provider.store.consent(USER, CLIENT_ID, "connections")
    provider.store.issue(grant, good, None, 3600)
    grant = provider.store.consent(NARROW_USER, CLIENT_ID, "profile")
    provider.store.issue(grant, narrow, None, 3600)

    return Tokens(provider.store, good, narrow)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
