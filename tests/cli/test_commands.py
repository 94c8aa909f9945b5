"""The `oauth-tai` command as an administrator uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from oauth_tai.database import consumers
from oauth_tai.settings import Settings
from oauth_tai.system import open_provider
from tests.conftest import database_env, run_cli, server_env

REDIRECT = "https://app.example/callback"


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return server_env(tmp_path / "var", **database_env(database_url))


def _cli(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = run_cli(env, *args, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fails(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = run_cli(env, *args, input=input)
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1, "errors are one line"
    assert "Traceback" not in result.stderr
    return result.stderr


def test_add_shows_the_secret_once_and_stores_a_hash(env: dict[str, str]) -> None:
    added = json.loads(
        _cli(
            env,
            "clients",
            "add",
            "app1",
            "--name",
            "App One",
            "--redirect-uri",
            REDIRECT,
            "--json",
        )
    )
    secret = added["client_secret"]
    assert len(secret) >= 43
    assert added["name"] == "App One" and added["redirect_uri"] == REDIRECT

    shown = _cli(env, "clients", "show", "app1") + _cli(env, "clients", "list")
    assert secret not in shown and "secret" not in shown

    engine = open_provider(Settings.load(env)).engine
    with engine.connect() as conn:
        stored = conn.execute(select(consumers.c.secret_hash)).scalar_one()
    engine.dispose()
    assert secret not in stored and stored.startswith("sha256$")


def test_list_count_edit_delete(env: dict[str, str]) -> None:
    for client_id in ("b-app", "a-app"):
        _cli(
            env,
            "clients",
            "add",
            client_id,
            "--name",
            client_id.upper(),
            "--redirect-uri",
            REDIRECT,
        )

    listed = json.loads(_cli(env, "clients", "list", "--json"))
    assert [c["client_id"] for c in listed] == ["a-app", "b-app"]
    assert json.loads(_cli(env, "clients", "count", "--json")) == {"count": 2}
    paged = json.loads(_cli(env, "clients", "list", "--offset", "1", "--json"))
    assert [c["client_id"] for c in paged] == ["b-app"]

    _cli(env, "clients", "edit", "b-app", "--disable")
    assert _cli(env, "clients", "list").splitlines() == [
        f"a-app\tA-APP\t{REDIRECT}",
        f"b-app\tB-APP\t{REDIRECT}\tdisabled",
    ]

    _cli(env, "clients", "edit", "a-app", "--name", "Renamed")
    assert json.loads(_cli(env, "clients", "show", "a-app", "--json"))["name"] == (
        "Renamed"
    )

    _cli(env, "clients", "delete", "a-app")
    assert _cli(env, "clients", "count").strip() == "1"


@pytest.mark.parametrize(
    "args",
    [
        ("clients", "show", "nope"),
        ("clients", "edit", "nope", "--name", "X"),
        ("clients", "delete", "nope"),
        ("clients", "reset-secret", "nope"),
    ],
)
def test_unknown_consumer_is_a_clear_error(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    assert "no consumer named 'nope'" in _fails(env, *args)


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example/callback",
        "https://app.example/callback#frag",
        "/callback",
        "not a url",
        "https://a.example:abc/cb",
        "https://a.example:99999/cb",
        "https://a.example/c\nb",
        "https://a.example/ cb",
        "https://exa<mple.com/cb",
        "https://user:pw@a.example/cb",
    ],
)
def test_bad_redirect_uri_is_refused(env: dict[str, str], uri: str) -> None:
    message = _fails(env, "clients", "add", "app", "--name", "A", "--redirect-uri", uri)
    assert "redirect URI" in message
    assert _cli(env, "clients", "count").strip() == "0"


@pytest.mark.parametrize(
    "name",
    [
        "A\tB",
        "A\nB",
        "A\rB",
        "A\x7fB",
        "A\x85B",
        "A\u2028B",
        "A\u202eB",
        "\u200b",
        # Bytes that are no UTF-8 reach the command as lone surrogates.
        "A\udcffB",
    ],
)
def test_name_with_a_control_character_is_refused(
    env: dict[str, str], name: str
) -> None:
    message = _fails(
        env, "clients", "add", "app", "--name", name, "--redirect-uri", REDIRECT
    )
    assert "control, format or line-separator character" in message
    assert _cli(env, "clients", "count").strip() == "0"


def test_loopback_http_redirect_is_allowed(env: dict[str, str]) -> None:
    _cli(
        env,
        "clients",
        "add",
        "local",
        "--name",
        "Local",
        "--redirect-uri",
        "http://127.0.0.1:9000/cb",
    )
    assert _cli(env, "clients", "count").strip() == "1"


def test_duplicate_id_is_refused(env: dict[str, str]) -> None:
    _cli(env, "clients", "add", "app", "--name", "A", "--redirect-uri", REDIRECT)
    assert "already exists" in _fails(
        env, "clients", "add", "app", "--name", "B", "--redirect-uri", REDIRECT
    )
    assert json.loads(_cli(env, "clients", "show", "app", "--json"))["name"] == "A"


def test_edit_without_changes_is_refused(env: dict[str, str]) -> None:
    _cli(env, "clients", "add", "app", "--name", "A", "--redirect-uri", REDIRECT)
    assert "nothing to change" in _fails(env, "clients", "edit", "app")


def test_reset_secret_retires_the_old_one(env: dict[str, str]) -> None:
    old = json.loads(
        _cli(
            env,
            "clients",
            "add",
            "app",
            "--name",
            "A",
            "--redirect-uri",
            REDIRECT,
            "--json",
        )
    )["client_secret"]
    new = json.loads(_cli(env, "clients", "reset-secret", "app", "--json"))[
        "client_secret"
    ]

    provider = open_provider(Settings.load(env))
    assert new != old
    assert provider.registry.authenticate("app", old) is None
    assert provider.registry.authenticate("app", new) is not None
    with provider.engine.connect() as conn:
        stored = conn.execute(select(consumers.c.secret_hash)).scalar_one()
    provider.engine.dispose()
    assert new not in stored and stored.startswith("sha256$")


def test_delete_revokes_the_consumers_tokens(env: dict[str, str]) -> None:
    _cli(env, "clients", "add", "app", "--name", "A", "--redirect-uri", REDIRECT)
    provider = open_provider(Settings.load(env))
    provider.users.add("carol", "correct horse")
    grant = provider.store.consent("carol", "app", "connections")
    provider.store.issue(grant, "access-token-value", "refresh-token-value", 3600)
    assert provider.store.introspect("access-token-value") is not None

    _cli(env, "clients", "delete", "app")

    assert provider.store.introspect("access-token-value") is None
    assert provider.store.find_refresh("refresh-token-value") is None


def test_users_add_list_delete(env: dict[str, str]) -> None:
    _cli(env, "users", "add", "dave", "--password-stdin", input="s3cret-pass\n")
    assert _cli(env, "users", "list").split() == ["dave"]

    provider = open_provider(Settings.load(env))
    assert provider.users.authenticate("dave", "s3cret-pass")
    assert not provider.users.authenticate("dave", "wrong-pass")

    assert "already exists" in _fails(
        env, "users", "add", "dave", "--password-stdin", input="another-pass\n"
    )
    _cli(env, "users", "delete", "dave")
    assert "no user named 'dave'" in _fails(env, "users", "delete", "dave")


def test_users_add_refuses_a_missing_or_short_password(env: dict[str, str]) -> None:
    assert "no password" in _fails(
        env, "users", "add", "erin", "--password-stdin", input=""
    )
    assert "at least" in _fails(
        env, "users", "add", "erin", "--password-stdin", input="short\n"
    )
    assert _cli(env, "users", "list", "--json").strip() == "[]"


def test_tokens_purge_deletes_only_expired_rows(env: dict[str, str]) -> None:
    _cli(env, "clients", "add", "app", "--name", "A", "--redirect-uri", REDIRECT)
    provider = open_provider(Settings.load(env))
    grant = provider.store.consent("frank", "app", "connections")
    provider.store.issue(grant, "live-token", None, 3600)
    provider.store.issue(grant, "dead-token", None, -10)

    assert json.loads(_cli(env, "tokens", "purge", "--json")) == {"purged": 1}
    assert provider.store.introspect("live-token") is not None


def test_no_command_prints_help_and_fails(env: dict[str, str]) -> None:
    result = run_cli(env)
    assert result.returncode == 2
    assert "clients" in result.stderr
