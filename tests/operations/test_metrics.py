"""The metrics: named by convention, labelled without identities, and moving."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import REGISTRY

from oauth_tai import metrics
from tests.conftest import (
    LiveServer,
    server_env,
    start_server,
    stop_server,
)
from tests.oauth_client import (
    ENDPOINT,
    REDIRECT_URI,
    REVOKE,
    ConsumerCredentials,
    add_user,
    authorization_url,
    authorize_as_user,
    basic_auth,
    loopback_session,
    post_token,
    register_consumer,
)
from tests.operations.conftest import Process, scrape, start_gateway, value

# Every label oauth-tai uses; each takes values from a small fixed set.
LABELS = {"outcome", "reason", "tier", "endpoint", "channel"}

# The revocation feed is read every second; this bounds the wait for it.
FEED_DEADLINE_SECONDS = 10.0


def test_names_follow_prometheus_conventions_and_labels_name_no_one() -> None:
    ours = [f for f in REGISTRY.collect() if f.name.startswith("oauth_tai_")]
    names = {family.name for family in ours}

    # One of each kind the module defines, found in the registry.
    assert {
        "oauth_tai_decisions",
        "oauth_tai_cache_answers",
        "oauth_tai_cache_negative_hits",
        "oauth_tai_provider_call_seconds",
        "oauth_tai_provider_errors",
        "oauth_tai_redis_errors",
        "oauth_tai_revocations_sent",
        "oauth_tai_revocations_received",
        "oauth_tai_singleflight_waits",
        "oauth_tai_circuit_state",
    } <= names
    for family in ours:
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= LABELS, sample

    assert metrics.REFUSED == "refused"


def _token(server: LiveServer) -> tuple[ConsumerCredentials, str]:
    consumer = register_consumer(server, "metered-app", "Metered", REDIRECT_URI)
    add_user(server, "bob")
    browser = loopback_session()
    redirect = authorize_as_user(
        browser, authorization_url(server.base, consumer), "bob"
    )
    answer = post_token(
        loopback_session(),
        server.base,
        consumer,
        {
            "grant_type": "authorization_code",
            "code": redirect["code"],
            "redirect_uri": consumer.redirect_uri,
        },
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return consumer, token


def test_provider_calls_and_revocations_move_the_counters(
    tmp_path: Path, processes: list[Process]
) -> None:
    """A gateway times its introspection calls; a revocation is sent and heard."""
    server = start_server(tmp_path / "provider")
    try:
        consumer, token = _token(server)
        gateway_secret = register_consumer(
            server, "gateway", "The gateway", REDIRECT_URI
        ).client_secret
        gateway = start_gateway(
            server_env(
                tmp_path / "gateway",
                OAUTH_TAI_INTROSPECTION_URL=server.base + ENDPOINT + "/introspect",
                OAUTH_TAI_INTROSPECTION_CLIENT_ID="gateway",
                OAUTH_TAI_INTROSPECTION_CLIENT_SECRET=gateway_secret,
            ),
            tmp_path / "gateway.log",
        )
        processes.append(gateway)
        http = loopback_session()
        before = scrape(gateway.base + "/metrics")

        allowed = http.get(
            gateway.base + "/auth",
            headers={
                "Authorization": f"Bearer {token}",
                "X-Original-Method": "GET",
                "X-Original-URI": "/api/report",
            },
            timeout=30,
        )
        bad = http.get(gateway.base + "/auth", timeout=30)
        after = scrape(gateway.base + "/metrics")

        assert allowed.status_code == 200, allowed.text
        assert bad.status_code == 400
        calls = "oauth_tai_provider_call_seconds_count"
        assert value(after, calls, endpoint="introspection") == 1 + value(
            before, calls, endpoint="introspection"
        )
        assert (
            value(after, "oauth_tai_provider_errors_total", endpoint="introspection")
            == 0
        )
        invalid = {"outcome": "refused", "reason": "invalid_request"}
        assert value(after, "oauth_tai_decisions_total", **invalid) == 1 + value(
            before, "oauth_tai_decisions_total", **invalid
        )

        # The provider revokes the token, announces it, and its own feed
        # follower hears of it.
        revoked = http.post(
            server.base + REVOKE,
            data={"token": token},
            headers={
                "Authorization": basic_auth("metered-app", consumer.client_secret)
            },
            timeout=30,
        )
        assert revoked.status_code == 200, revoked.text
        sent = scrape(server.base + "/metrics")
        assert value(sent, "oauth_tai_revocations_sent_total") >= 1

        received = 0.0
        give_up = time.monotonic() + FEED_DEADLINE_SECONDS
        while received < 1 and time.monotonic() < give_up:
            time.sleep(0.2)
            heard = scrape(server.base + "/metrics")
            received = value(
                heard, "oauth_tai_revocations_received_total", channel="feed"
            )
        assert received >= 1
    finally:
        stop_server(server)
