"""``oauth-tai check-token``: the middleware's decision, explained, token unseen."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oauth_tai.cache import LOG_HASH_CHARS, TokenCache
from oauth_tai.identity import identity_from_answer
from oauth_tai.settings import Settings
from oauth_tai.system import Provider, open_provider
from tests.conftest import run_cli, server_env
from tests.oauth_client import PROFILE

CONSUMER = "checked-app"


@pytest.fixture
def env(tmp_path: Path, redis_url: str, redis_prefix: str) -> dict[str, str]:
    """A database of the test's own, and Redis as L2 under its own prefix."""
    return server_env(
        tmp_path / "var",
        OAUTH_TAI_SECRET_KEY="check-token-" + "k" * 40,
        OAUTH_TAI_REDIS_URL=redis_url,
        OAUTH_TAI_REDIS_PREFIX=redis_prefix,
    )


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[Provider]:
    """The database the command reads, with one consumer."""
    provider = open_provider(Settings.load(env))
    provider.registry.add(CONSUMER, "Checked App", "https://app.example/cb")
    yield provider
    provider.engine.dispose()


def _issue(store: Provider, user: str = "carol") -> str:
    grant = store.store.consent(user, CONSUMER, "connections")
    token = secrets.token_urlsafe(32)
    store.store.issue(grant, token, None, 3600)
    return token


def _share(env: dict[str, str], store: Provider, token: str) -> None:
    """Put the provider's answer in L2, as a serving process would."""
    settings = Settings.load(env)
    cache = TokenCache(
        settings.effective_secret_key(),
        redis_client=redis.Redis.from_url(settings.redis_url),
        prefix=settings.redis_prefix,
    )
    key = cache.key(token)
    answer = store.store.introspect(token)
    assert answer is not None
    cache.put(key, identity_from_answer(answer, key[:LOG_HASH_CHARS]))


def _check(env: dict[str, str], token: str, *args: str) -> tuple[int, str]:
    done = run_cli(env, "check-token", *args, input=token + "\n")
    assert token not in done.stdout + done.stderr
    return done.returncode, done.stdout


def test_a_valid_token_shows_rule_tier_identity_and_expiry(
    env: dict[str, str], store: Provider
) -> None:
    token = _issue(store)

    status, text = _check(env, token)
    _share(env, store, token)
    again, data = _check(env, token, "--json")

    assert status == 0
    assert f"GET {PROFILE}" in text
    assert "rule:     #1, paths under /connections/" in text
    assert "answered: the provider: the provider's token store" in text
    assert "user:     carol" in text
    assert "consumer: checked-app (Checked App)" in text
    assert re.search(r"expires:  \d{4}-\d\d-\d\dT[\d:]{8}Z \(in (59 min|1 h)", text)
    assert "decision: allowed (200)" in text

    found = json.loads(data)
    assert again == 0
    assert found["tier"] == "l2"
    assert found["decision"] == "allowed"
    assert found["identity"]["user"] == "carol"
    assert found["identity"]["consumer_id"] == CONSUMER
    assert found["identity"]["scopes"] == ["connections"]
    assert len(found["identity"]["token_hash"]) == 12
    assert found["rule"]["prefix"] == "/connections/"


def test_a_revoked_token_is_refused_with_the_reason(
    env: dict[str, str], store: Provider
) -> None:
    token = _issue(store)
    store.store.revoke_consumer(CONSUMER)

    status, text = _check(env, token)

    assert status == 3
    # The revocation may have left its mark in Redis for every process.
    assert re.search(r"answered: (L2, the shared Redis cache|the provider)", text)
    assert (
        "decision: refused (401 invalid_token): the access token is not active" in text
    )


def test_paths_no_rule_intercepts_and_gateway_rules(
    env: dict[str, str], store: Provider
) -> None:
    token = _issue(store)

    public, text = _check(env, token, "--path", "/oauth2/login")
    excluded, data = _check(
        env,
        token,
        "--prefix",
        "/api/",
        "--exclude",
        "/api/public/",
        "--path",
        "/api/public/x",
        "--method",
        "post",
        "--json",
    )
    guarded, guarded_text = _check(
        env,
        token,
        "--prefix",
        "/api/",
        "--path",
        "/api/reports",
        "--file",
        "/dev/stdin",
    )

    assert public == 0
    assert "rule:     none intercepts this request" in text
    assert "decision: passed (200)" in text
    assert excluded == 0
    assert json.loads(data)["rule"] is None
    assert json.loads(data)["method"] == "POST"
    assert guarded == 0
    assert "rule:     #1, paths under /api/" in guarded_text


def test_the_help_tells_which_paths_are_judged_without_a_prefix(
    env: dict[str, str], store: Provider
) -> None:
    """serve's rule, unlike the gateway's "/", which --exclude alone brings."""
    help_text = " ".join(run_cli(env, "check-token", "--help").stdout.split())
    gateway_help = " ".join(run_cli(env, "gateway", "--help").stdout.split())
    token = _issue(store)

    _, outside = _check(env, token, "--path", "/api/x")
    _, inside = _check(env, token, "--path", "/connections/files/oauth/api/feed")
    _, excluding = _check(env, token, "--exclude", "/public/", "--path", "/api/x")

    assert "default: serve's rule, every /connections/APP/oauth/ path" in help_text
    assert "or / when --exclude is given" in help_text
    assert "none intercepts this request" in outside
    assert "rule: #1, paths under /connections/" in " ".join(inside.split())
    assert "rule: #1, paths under /;" in " ".join(excluding.split())
    assert "(repeatable; default /)" in gateway_help


def test_the_token_is_never_an_argument(env: dict[str, str]) -> None:
    unasked = run_cli(env, "check-token", "some-token-value")
    empty = run_cli(env, "check-token", input="\n")
    two = run_cli(env, "check-token", input="one two\n")

    assert unasked.returncode == 2
    assert "unrecognized arguments" in unasked.stderr
    assert (empty.returncode, two.returncode) == (1, 1)
    assert "give exactly one token" in empty.stderr
