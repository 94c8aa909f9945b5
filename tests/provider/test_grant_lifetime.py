"""A grant lasts six months from consent; nothing issued from it outlives it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from oauth_tai.provider.store import Lifetimes, TokenStore
from oauth_tai.system import Provider

SIX_MONTHS = 15_768_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(provider: Provider, clock: Clock) -> TokenStore:
    provider.registry.add("life-app", "Life App", "https://life.example/cb")
    return TokenStore(provider.engine, Lifetimes(), clock=clock)


def test_defaults_are_the_connections_lifetimes() -> None:
    lifetimes = Lifetimes()
    assert (lifetimes.code, lifetimes.access_token, lifetimes.grant) == (
        60,
        43_200,
        SIX_MONTHS,
    )


def test_a_new_consent_renews_the_grant(provider: Provider) -> None:
    clock = Clock()
    store = _store(provider, clock)
    first = store.consent("alice", "life-app", "connections")
    clock.now += 30 * 86_400

    second = store.consent("alice", "life-app", "connections")

    assert second == first, "the live grant is renewed, not duplicated"
    (grant,) = store.grants_of("alice")
    assert grant.expires_at == int(clock.now) + SIX_MONTHS


def test_an_access_token_never_outlives_its_grant(provider: Provider) -> None:
    clock = Clock()
    store = _store(provider, clock)
    grant = store.consent("alice", "life-app", "connections")
    clock.now += SIX_MONTHS - 600

    assert store.access_token_lifetime(grant) == 600
    store.issue(grant, "late-access", "late-refresh", 600)
    clock.now += 601

    assert store.introspect("late-access") is None
    refresh = store.find_refresh("late-refresh")
    assert refresh is not None and not refresh.active
    assert store.grants_of("alice") == []


def test_an_expired_grant_starts_over_on_consent(provider: Provider) -> None:
    clock = Clock()
    store = _store(provider, clock)
    old = store.consent("alice", "life-app", "connections")
    clock.now += SIX_MONTHS + 1

    new = store.consent("alice", "life-app", "connections")

    assert new != old
    (grant,) = store.grants_of("alice")
    assert grant.authorized_at == int(clock.now)


def test_simultaneous_consents_make_one_grant(provider: Provider) -> None:
    """Two tabs, or a double click: each consent renews the one grant."""
    provider.registry.add("race-app", "Race App", "https://race.example/cb")
    store = provider.store
    rounds, at_once = 5, 4
    for n in range(rounds):
        user = f"user-{n}"
        start = threading.Barrier(at_once)

        def consent(user: str = user, start: threading.Barrier = start) -> int:
            start.wait()
            return store.consent(user, "race-app", "connections")

        with ThreadPoolExecutor(at_once) as pool:
            ids = set(pool.map(lambda _: consent(), range(at_once)))

        assert len(ids) == 1, f"{user} got grants {ids}"
        assert len(store.grants_of(user)) == 1
