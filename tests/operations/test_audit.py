"""The audit trail: who did what, to which consumer and token, in its own logger."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import webtest

from oauth_tai.audit import AUDIT_LOGGER, audit
from oauth_tai.cache import LOG_HASH_CHARS
from oauth_tai.settings import Settings
from oauth_tai.system import build_system
from tests.conftest import run_cli, server_env
from tests.oauth_client import PASSWORD, InProcessProvider, basic_auth

APPS_API = "/oauth2/authzMgmt/connectionsProvider"


def _events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        dict(record.audit)  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == AUDIT_LOGGER
    ]


def test_every_change_is_audited_with_user_consumer_and_token_hash(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    system = build_system(settings)
    harness = InProcessProvider.create(webtest.TestApp(system.app), system.provider)

    def label(token: str) -> str:
        # The hash the middleware puts in Identity.token_hash and its logs.
        return system.cache.key(token)[:LOG_HASH_CHARS]

    harness.log_in()
    assert harness.decide("deny").status_int == 303
    tokens = harness.issue_tokens()
    refreshed = harness.refresh(tokens["refresh_token"]).json
    assert harness.revoke(refreshed["access_token"]).status_int == 200
    harness.app.delete(
        f"{APPS_API}/client/reader-app",
        headers={"Authorization": basic_auth("bob", PASSWORD)},
        status=204,
    )
    registry = system.provider.registry
    registry.edit("reader-app", name="Reader", redirect_uri=None)
    registry.edit("reader-app", enabled=False)
    registry.reset_secret("reader-app")
    registry.delete("reader-app")
    system.provider.users.delete("bob")
    system.provider.engine.dispose()

    events = _events(caplog)
    assert [e["event"] for e in events] == [
        "user_added",
        "consumer_registered",
        "consent_denied",
        "consent_granted",
        "token_issued",
        "token_refreshed",
        "token_revoked",
        "access_revoked",
        "consumer_edited",
        "consumer_disabled",
        "consumer_secret_reset",
        "consumer_deleted",
        "user_deleted",
    ]
    by_event = {e["event"]: e for e in events}
    assert by_event["consent_denied"] == {
        "event": "consent_denied",
        "by": "user",
        "user": "bob",
        "consumer": "reader-app",
    }
    assert by_event["consent_granted"]["scope"] == "connections"
    assert by_event["consent_granted"]["auto_authorized"] is False
    assert by_event["token_issued"]["token"] == label(tokens["access_token"])
    assert by_event["token_refreshed"]["token"] == label(refreshed["access_token"])
    assert by_event["token_revoked"] == {
        "event": "token_revoked",
        "by": "consumer",
        "user": "bob",
        "consumer": "reader-app",
        "token": label(refreshed["access_token"]),
    }
    for event in ("token_issued", "token_refreshed"):
        assert by_event[event]["by"] == "consumer"
        assert by_event[event]["user"] == "bob"
        assert by_event[event]["consumer"] == "reader-app"
    assert by_event["access_revoked"]["by"] == "user"
    assert by_event["consumer_edited"]["changed"] == "name"
    for event in ("consumer_disabled", "consumer_deleted", "user_deleted"):
        assert by_event[event]["by"] == "administrator"

    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (*tokens.values(), *refreshed.values()):
        if isinstance(secret, str) and len(secret) > 20:
            assert secret not in text


def test_a_name_cannot_forge_a_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    audit("consent_denied", by="user", user="eve\nINFO oauth_tai.audit: forged")

    line = caplog.records[-1].getMessage()
    assert "\n" not in line
    assert line == (
        'event=consent_denied by=user user="eve\\nINFO oauth_tai.audit: forged"'
    )


def test_commands_write_the_trail_as_json_fields(tmp_path: Path) -> None:
    env = server_env(tmp_path / "var", OAUTH_TAI_LOG_FORMAT="json")
    added = run_cli(
        env,
        "clients",
        "add",
        "json-app",
        "--name",
        "JSON App",
        "--redirect-uri",
        "https://app.example/cb",
    )
    disabled = run_cli(env, "clients", "edit", "json-app", "--disable")

    assert added.returncode == 0 and disabled.returncode == 0, added.stderr
    lines = [json.loads(line) for line in (added.stderr + disabled.stderr).splitlines()]
    assert [(line["event"], line["by"], line["consumer"]) for line in lines] == [
        ("consumer_registered", "administrator", "json-app"),
        ("consumer_disabled", "administrator", "json-app"),
    ]
    assert all(line["logger"] == AUDIT_LOGGER for line in lines)
    assert lines[0]["auto_authorize"] is False
    # Only the audit trail: the schema steps of a new database stay quiet.
    assert "schema" not in added.stderr
