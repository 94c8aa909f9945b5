"""Composition: revocations made by another process reach this one's cache."""

from __future__ import annotations

import webtest

from oauth_tai.cache import TokenCache
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.provider.store import Lifetimes
from oauth_tai.settings import Settings
from oauth_tai.system import Provider, RevocationFollower, build_app, open_provider


def _echo(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [str(environ.get("REMOTE_USER")).encode()]


def _issue(provider: Provider, token: str) -> int:
    provider.registry.add("feed-app", "Feed App", "https://feed.example/cb")
    grant = provider.store.consent("gina", "feed-app", "connections")
    provider.store.issue(grant, token, None, 3600)
    return grant


def test_a_revocation_by_another_process_is_evicted(
    settings: Settings, provider: Provider
) -> None:
    """The CLI revokes in its own process; the server's cache forgets it."""
    _issue(provider, "token-one")
    cache = TokenCache(b"s" * 32)
    app = webtest.TestApp(TrustAssociationMiddleware(_echo, provider.store, cache))
    follower = RevocationFollower(provider.store, cache)
    headers = {"Authorization": "Bearer token-one"}
    assert app.get("/", headers=headers).text == "gina"

    other_process = open_provider(settings)
    other_process.registry.delete("feed-app")

    # Still cached: without the feed this process would say yes.
    assert app.get("/", headers=headers).status_int == 200
    assert follower.poll() == 1
    assert app.get("/", headers=headers, status=401).status_int == 401


def test_the_follower_starts_after_what_was_revoked_before(
    settings: Settings, provider: Provider
) -> None:
    """Old revocations are not replayed when a process starts."""
    grant = _issue(provider, "token-two")
    provider.store.revoke_grant(grant)

    follower = RevocationFollower(provider.store, TokenCache(b"s" * 32))
    assert follower.poll() == 0

    open_provider(settings).store.revoke_user("gina")
    assert follower.poll() == 0, "nothing live was left to revoke"


def test_purge_drops_revocations_older_than_any_cached_token(
    provider: Provider,
) -> None:
    """All but the newest, which keeps the feed's ids from starting over."""
    grant = _issue(provider, "token-three")
    provider.store.issue(grant, "token-four", None, 3600)
    provider.store.revoke_grant(grant)
    assert provider.store.latest_revocation() == 2

    provider.store.lifetimes = Lifetimes(access_token=-1)
    provider.store.purge()
    newest, digests = provider.store.revocations_since(0)
    assert (newest, len(digests)) == (2, 1)


def test_a_revocation_after_a_purge_reaches_a_follower(
    settings: Settings, provider: Provider
) -> None:
    """The purge empties the feed of old rows; the next id still follows on."""
    grant = _issue(provider, "token-five")
    for token in ("token-six", "token-seven"):
        provider.store.issue(grant, token, None, 3600)
    provider.store.revoke_grant(grant)
    cache = TokenCache(b"s" * 32)
    app = webtest.TestApp(TrustAssociationMiddleware(_echo, provider.store, cache))
    follower = RevocationFollower(provider.store, cache)
    seen = follower.last_id
    assert seen == 3

    provider.store.lifetimes = Lifetimes(access_token=-1)
    provider.store.purge()
    provider.store.lifetimes = Lifetimes()
    grant = provider.store.consent("gina", "feed-app", "connections")
    provider.store.issue(grant, "token-eight", None, 3600)
    headers = {"Authorization": "Bearer token-eight"}
    assert app.get("/", headers=headers).text == "gina"

    open_provider(settings).store.revoke_grant(grant)
    assert provider.store.latest_revocation() > seen
    assert follower.poll() == 1
    assert app.get("/", headers=headers, status=401).status_int == 401


def test_every_oauth_path_under_connections_needs_a_token(settings: Settings) -> None:
    """The served app protects …/oauth/… paths and leaves the rest alone."""
    app = webtest.TestApp(build_app(settings))

    for path in (
        "/connections/opensocial/oauth/rest/people/@me/@self",
        "/connections/profiles/oauth/atom/profile.do",
        "/connections/files/oauth/api/myuserlibrary/feed",
    ):
        answer = app.get(path, status=401)
        assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="')

    assert app.get("/connections/oauth/apps").status_int == 303, "the login page"
    assert app.get("/connections/opensocial/basic/rest/x", status=404)
