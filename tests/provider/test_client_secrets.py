"""How consumers' secrets are stored and checked, on the real database.

New secrets are stored as one SHA-256; hashes that earlier versions wrote
with scrypt still work and are replaced by the fast hash at their first
match, unless the secret is not one we generated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pytest
import webtest
from sqlalchemy import select, update

from oauth_tai.database import consumers
from oauth_tai.provider import hashing
from oauth_tai.provider.hashing import (
    burn_client_secret_check,
    hash_client_secret,
    hash_password,
    new_secret,
    verify_client_secret,
)
from tests.oauth_client import (
    ConsumerCredentials,
    InProcessProvider,
    make_pkce,
)

ENDPOINTS = ["token", "introspect"]


def stored_hash(site: InProcessProvider) -> str:
    with site.provider.engine.connect() as conn:
        return str(
            conn.execute(
                select(consumers.c.secret_hash).where(
                    consumers.c.client_id == site.consumer.client_id
                )
            ).scalar_one()
        )


def store_hash(site: InProcessProvider, secret_hash: str) -> None:
    """Write a hash into the consumer's row, as an earlier version would have."""
    with site.provider.engine.begin() as conn:
        conn.execute(
            update(consumers)
            .where(consumers.c.client_id == site.consumer.client_id)
            .values(secret_hash=secret_hash)
        )


Call = Callable[[ConsumerCredentials], webtest.TestResponse]


def prepare(site: InProcessProvider, endpoint: str) -> Call:
    """Get what a call to the endpoint needs; return the call, which authenticates.

    At /token the call exchanges a code, at /introspect it asks about an
    access token; either is obtained now, before the test changes the row.
    """
    if endpoint == "introspect":
        access_token = site.issue_tokens()["access_token"]
        return lambda consumer: site.introspect(access_token, consumer)

    verifier, challenge = make_pkce()
    code = site.code(challenge=challenge)
    return lambda consumer: site.exchange(code, verifier, consumer)


def assert_invalid_client(answer: webtest.TestResponse) -> None:
    assert answer.status_int == 401, answer.text
    assert answer.json["error"] == "invalid_client"
    assert "access_token" not in answer.json and "active" not in answer.json


def test_new_and_reset_secrets_are_stored_as_one_sha256(
    site: InProcessProvider,
) -> None:
    """Registered and reset secrets get the fast scheme, and work."""
    added = stored_hash(site)
    assert added.startswith("sha256$")
    assert site.consumer.client_secret not in added

    secret = site.provider.registry.reset_secret(site.consumer.client_id)
    reset = stored_hash(site)
    assert reset.startswith("sha256$") and reset != added
    answer = site.introspect("x", replace(site.consumer, client_secret=secret))
    assert answer.json == {"active": False}
    assert_invalid_client(site.introspect("x"))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_legacy_scrypt_hash_works_and_is_upgraded(
    site: InProcessProvider, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A row holding an earlier version's scrypt hash authenticates once slowly.

    After that first match the row holds the fast hash of the same secret,
    and neither the secret nor a hash of it reaches a log line.
    """
    call = prepare(site, endpoint)
    legacy = hash_password(site.consumer.client_secret)
    store_hash(site, legacy)

    with caplog.at_level(logging.DEBUG, logger="oauth_tai"):
        answer = call(site.consumer)

    assert answer.status_int == 200, answer.text
    upgraded = stored_hash(site)
    assert upgraded.startswith("sha256$")
    assert verify_client_secret(site.consumer.client_secret, upgraded)
    assert prepare(site, endpoint)(site.consumer).status_int == 200
    assert "reader-app with the fast hash" in caplog.text
    for secret in (site.consumer.client_secret, legacy, upgraded):
        assert secret not in caplog.text
        assert secret not in answer.text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_legacy_secret_we_did_not_generate_stays_on_scrypt(
    site: InProcessProvider, endpoint: str
) -> None:
    """A legacy secret of unknown entropy works, and keeps its slow hash."""
    call = prepare(site, endpoint)
    chosen = replace(site.consumer, client_secret="old-app-secret")
    store_hash(site, hash_password(chosen.client_secret))

    assert call(chosen).status_int == 200
    assert stored_hash(site).startswith("scrypt$")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("scheme", ["sha256", "scrypt"])
def test_a_wrong_secret_is_invalid_client(
    site: InProcessProvider, endpoint: str, scheme: str
) -> None:
    """A wrong secret is refused under either scheme, and changes no row."""
    call = prepare(site, endpoint)
    if scheme == "scrypt":
        store_hash(site, hash_password(site.consumer.client_secret))
    before = stored_hash(site)
    wrong = replace(site.consumer, client_secret=new_secret())

    assert_invalid_client(call(wrong))
    assert stored_hash(site) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_unknown_client_id_is_invalid_client(
    site: InProcessProvider, endpoint: str
) -> None:
    call = prepare(site, endpoint)
    assert_invalid_client(call(replace(site.consumer, client_id="no-such-app")))


GARBLED = (
    "",
    "sha256",
    "sha256$",
    "sha256$" + "A" * 10,
    "sha256$***not-base64***",
    "sha256$é",
    "SHA256$",
    "md5$0123456789abcdef",
    "plain text",
    "scrypt$",
    "scrypt$16384$8$1$salt",
    "scrypt$-4$8$1$c2FsdA$AAAA",
    "scrypt$99999999999999999999999$8$1$c2FsdA$AAAA",
    "scrypt$16384$0$1$c2FsdA$AAAA",
    "scrypt$x$8$1$c2FsdA$AAAA",
    "scrypt$16384$8$1$c2FsdA$***",
    "scrypt$16384$8$1$***$AAAA",
)


@pytest.mark.parametrize("garbled", GARBLED)
def test_a_corrupted_stored_hash_is_invalid_client_not_a_crash(
    site: InProcessProvider, garbled: str
) -> None:
    """Whatever the row holds, the right secret gets a 401, never a 500."""
    tokens = site.issue_tokens()
    store_hash(site, garbled)

    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert_invalid_client(site.introspect(tokens["access_token"]))
    assert_invalid_client(site.token(refresh))

    assert stored_hash(site) == garbled


def test_an_unknown_id_costs_a_fast_check_not_scrypt(
    site: InProcessProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown and known ids both go through one fast hash, never scrypt."""
    registry = site.provider.registry
    runs: list[int] = []
    real = hashing._scrypt

    def counted(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        runs.append(n)
        return real(secret, salt, n, r, p)

    monkeypatch.setattr(hashing, "_scrypt", counted)

    assert registry.authenticate("no-such-app", new_secret()) is None
    assert registry.authenticate(site.consumer.client_id, new_secret()) is None
    assert registry.authenticate(site.consumer.client_id, site.consumer.client_secret)

    assert runs == []


def test_the_upgrade_never_overwrites_a_secret_reset_in_between(
    site: InProcessProvider,
) -> None:
    """An upgrade writes only over the very hash that was checked."""
    registry = site.provider.registry
    stale = hash_password(site.consumer.client_secret)
    current = stored_hash(site)

    registry._upgrade_hash(site.consumer.client_id, stale, "sha256$stale")

    assert stored_hash(site) == current


def test_only_generated_secrets_get_the_fast_scheme() -> None:
    """A secret not shaped like ours may be weak: it is hashed with scrypt."""
    assert hash_client_secret(new_secret()).startswith("sha256$")
    for chosen in ("old-app-secret", "", "x" * 42, "a secret with spaces" * 3):
        stored = hash_client_secret(chosen)
        assert stored.startswith("scrypt$")
        assert verify_client_secret(chosen, stored)


def test_a_secret_that_is_not_utf8_never_matches() -> None:
    """Neither check raises for a string that cannot be encoded."""
    unencodable = "\ud800"
    assert not verify_client_secret(unencodable, hash_client_secret(new_secret()))
    assert not verify_client_secret(unencodable, hash_password("x"))
    burn_client_secret_check(unencodable)
