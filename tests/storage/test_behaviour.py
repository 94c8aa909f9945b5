"""What the provider relies on from its database, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import webtest
from sqlalchemy import event, func, select

from oauth_tai.database import codes, grants, tokens
from oauth_tai.provider.hashing import token_digest
from oauth_tai.provider.store import Lifetimes
from oauth_tai.settings import Settings
from oauth_tai.system import Provider, build_app
from tests.oauth_client import AUTHORIZE, InProcessProvider, make_pkce, query_of

CLIENT = "shop-app"


def _grant(provider: Provider, user: str = "hana") -> int:
    if provider.registry.find(CLIENT) is None:
        provider.registry.add(CLIENT, "Shop App", "https://shop.example/cb")
    return provider.store.consent(user, CLIENT, "connections")


def _rows(provider: Provider) -> dict[str, int]:
    with provider.engine.connect() as conn:
        return {
            table.name: conn.execute(
                select(func.count()).select_from(table)
            ).scalar_one()
            for table in (grants, codes, tokens)
        }


def test_of_many_uses_of_one_refresh_token_exactly_one_wins(
    provider: Provider,
) -> None:
    grant = _grant(provider)
    provider.store.issue(grant, "access-1", "refresh-1", 3600)
    contenders = 8
    start = threading.Barrier(contenders)

    def use(_index: int) -> bool:
        start.wait(timeout=10)
        return provider.store.retire_refresh("refresh-1")

    with ThreadPoolExecutor(contenders) as pool:
        wins = list(pool.map(use, range(contenders)))

    assert wins.count(True) == 1
    refresh = provider.store.find_refresh("refresh-1")
    assert refresh is not None and refresh.retired and not refresh.active


def test_a_code_is_claimed_once(provider: Provider) -> None:
    grant = _grant(provider)
    provider.store.save_code(
        "code-1", grant, CLIENT, "https://shop.example/cb", None, None
    )

    assert provider.store.claim_code("code-1") is True
    assert provider.store.claim_code("code-1") is False
    assert provider.store.claim_code("no-such-code") is False


def test_deleting_a_consumer_deletes_its_grants_codes_and_tokens(
    provider: Provider,
) -> None:
    """ON DELETE CASCADE, which SQLite enforces only when asked to."""
    grant = _grant(provider)
    provider.store.save_code(
        "code-2", grant, CLIENT, "https://shop.example/cb", None, None
    )
    provider.store.issue(grant, "access-2", "refresh-2", 3600, code="code-2")
    assert _rows(provider) == {"grants": 1, "codes": 1, "tokens": 2}

    provider.registry.delete(CLIENT)

    assert _rows(provider) == {"grants": 0, "codes": 0, "tokens": 0}


def test_times_past_2038_are_kept(provider: Provider) -> None:
    """Seconds since 1970 outgrow 32 bits on 19 January 2038."""
    provider.store.lifetimes = Lifetimes(grant=2**31)
    grant = _grant(provider)
    provider.store.issue(grant, "access-3", "refresh-3", 3600)

    refresh = provider.store.find_refresh("refresh-3")
    assert refresh is not None and refresh.active
    assert refresh.grant_expires_at > 2**31
    claims = provider.store.introspect("access-3")
    assert claims is not None and claims["exp"] < 2**31


def test_a_code_challenge_that_is_not_s256_is_refused_not_stored(
    settings: Settings, provider: Provider
) -> None:
    """PostgreSQL refuses a value longer than its column; SQLite keeps it."""
    site = InProcessProvider.create(webtest.TestApp(build_app(settings)), provider)
    assert site.log_in().status_int == 303
    _verifier, good = make_pkce()

    for challenge in ("A" * 300, good + "="):
        answer = site.app.get(AUTHORIZE, site.authorization_params(challenge=challenge))
        assert answer.status_int == 303
        assert query_of(answer.headers["Location"])["error"] == "invalid_request"

    assert site.code(challenge=good)
    assert _rows(provider)["codes"] == 1


def test_disabled_consumers_tokens_are_not_active(provider: Provider) -> None:
    """A boolean column read back the same way on both databases."""
    grant = _grant(provider)
    provider.store.issue(grant, "access-4", None, 3600)
    provider.registry.edit(CLIENT, enabled=False)
    provider.registry.edit(CLIENT, enabled=True)

    assert provider.registry.get(CLIENT).enabled is True
    assert provider.store.introspect("access-4") is None, "disabling revoked it"


def test_the_revocation_feed_misses_no_revocation_that_commits_late(
    provider: Provider,
) -> None:
    """A follower reading between two revocations' commits sees both in time.

    The first revocation holds its transaction open after writing its row;
    a second one runs meanwhile, and a follower polls before the first
    commits. Rows that became visible out of id order would be skipped.
    """
    store = provider.store
    grant = _grant(provider)
    store.issue(grant, "slow-token", None, 3600)
    store.issue(grant, "fast-token", None, 3600)
    last = store.latest_revocation()
    written, release = threading.Event(), threading.Event()

    def hold_after_writing(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        slow = threading.current_thread().name == "slow"
        if slow and statement.startswith("INSERT INTO revocations"):
            written.set()
            release.wait(timeout=10)

    event.listen(provider.engine, "after_cursor_execute", hold_after_writing)
    slow = threading.Thread(
        target=store.revoke_token, args=("slow-token", CLIENT), name="slow"
    )
    fast = threading.Thread(target=store.revoke_token, args=("fast-token", CLIENT))
    slow.start()
    assert written.wait(timeout=10)
    fast.start()
    fast.join(timeout=1.0)

    last, seen = store.revocations_since(last)
    release.set()
    slow.join(timeout=10)
    fast.join(timeout=10)
    last, later = store.revocations_since(last)
    event.remove(provider.engine, "after_cursor_execute", hold_after_writing)

    assert sorted(seen + later) == sorted(
        [token_digest("slow-token"), token_digest("fast-token")]
    )
