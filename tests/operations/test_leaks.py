"""No secret of the whole flow leaks into a log, Redis or an error body.

``oauth-tai serve`` and an ``oauth-tai gateway`` that introspects against
it run as processes of their own, logging at DEBUG and sharing the test's
Redis under a prefix of their own. The test plays consumer, user and
administrator through every step (consent, code exchange, API calls,
refresh, the failures an attacker would try, revocations) and keeps every
secret it used or made up. Then it reads every log line, every Redis key
and value under the prefix, every answer that was an error and what the
commands printed, and finds none of those secrets in any form a request
carried them in.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, quote_plus, urljoin

import redis
import requests

from tests.conftest import LiveServer, server_env, start_server, stop_server
from tests.oauth_client import (
    API,
    ENDPOINT,
    INTROSPECT,
    PASSWORD,
    PROFILE,
    REDIRECT_URI,
    REVOKE,
    ConsumerCredentials,
    add_user,
    authorization_url,
    authorize_as_user,
    basic_auth,
    log_in,
    loopback_session,
    make_pkce,
    post_token,
    register_consumer,
)
from tests.operations.conftest import Process, start_gateway

APPS_API = "/oauth2/authzMgmt/connectionsProvider"


class Witness:
    """The secrets of the flow, and every error answer the flow received."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.error_bodies: list[str] = []

    def session(self) -> requests.Session:
        session = loopback_session()
        session.hooks["response"].append(self._keep_errors)
        return session

    def keep(self, *secrets: str) -> None:
        self.secrets.update(s for s in secrets if s)

    def _keep_errors(self, response: requests.Response, **_: object) -> None:
        if response.status_code >= 400:
            self.error_bodies.append(response.text)

    def forms(self) -> set[str]:
        """Each secret as sent raw, percent-encoded or form-encoded."""
        return {
            form
            for secret in self.secrets
            for form in (secret, quote(secret, safe=""), quote_plus(secret))
        }


def _code_flow(
    witness: Witness, base: str, consumer: ConsumerCredentials, replay: bool = False
) -> dict[str, str]:
    """Authorize as bob with PKCE and exchange the code; return the tokens.

    :param replay: exchange the code once more, which is refused and
        revokes the tokens it issued (RFC 6749 §4.1.2).
    """
    verifier, challenge = make_pkce()
    url = authorization_url(base, consumer, challenge=challenge)
    code = authorize_as_user(witness.session(), url, "bob")["code"]
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": consumer.redirect_uri,
        "code_verifier": verifier,
    }
    answer = post_token(witness.session(), base, consumer, exchange)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, str] = answer.json()
    witness.keep(verifier, code, tokens["access_token"], tokens["refresh_token"])

    if replay:
        again = post_token(witness.session(), base, consumer, exchange)
        assert again.status_code == 400
    return tokens


def _attacks(
    witness: Witness, server: LiveServer, consumer: ConsumerCredentials
) -> None:
    """What an attacker tries with wrong secrets; each answer is kept."""
    base = server.base
    wrong_secret = consumer.client_secret[::-1]
    wrong_password = "not " + PASSWORD
    forged_token = "forged" + consumer.client_secret[:20]
    witness.keep(wrong_secret, wrong_password, forged_token)

    impostor = ConsumerCredentials(
        consumer.client_id, wrong_secret, consumer.name, consumer.redirect_uri
    )
    answer = post_token(
        witness.session(),
        base,
        impostor,
        {"grant_type": "refresh_token", "refresh_token": forged_token},
    )
    assert answer.status_code == 401

    browser = witness.session()
    login = browser.get(base + "/oauth2/login?next=/", allow_redirects=False)
    refused = log_in(browser, urljoin(base, login.url), "bob", wrong_password)
    assert refused.status_code == 401

    api = witness.session().get(
        base + PROFILE, headers={"Authorization": f"Bearer {forged_token}"}
    )
    assert api.status_code == 401


def _redis_contents(url: str, prefix: str) -> list[str]:
    client = redis.Redis.from_url(url)
    found: list[str] = []
    try:
        for key in client.scan_iter(match=prefix + "*"):
            found.append(key.decode("latin-1"))
            kind = client.type(key).decode()
            if kind == "string":
                values = [client.get(key)]
            elif kind == "hash":
                values = [b" ".join(p) for p in client.hgetall(key).items()]
            elif kind in ("list",):
                values = client.lrange(key, 0, -1)
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "zset":
                values = client.zrange(key, 0, -1)
            elif kind == "stream":
                values = [json.dumps(str(e)).encode() for e in client.xrange(key)]
            else:
                values = []
            found.extend(v.decode("latin-1") for v in values if v is not None)
    finally:
        client.close()
    return found


def test_no_secret_reaches_logs_redis_or_error_bodies(
    tmp_path: Path, redis_url: str, redis_prefix: str, processes: list[Process]
) -> None:
    witness = Witness()
    witness.keep(PASSWORD)
    shared = {
        "OAUTH_TAI_LOG_LEVEL": "DEBUG",
        "OAUTH_TAI_REDIS_URL": redis_url,
        "OAUTH_TAI_REDIS_PREFIX": redis_prefix,
        "OAUTH_TAI_SECRET_KEY": "leak-test-" + "s" * 40,
    }
    server = start_server(tmp_path / "provider", **shared)
    printed: list[str] = []
    try:
        consumer = register_consumer(server, "leaky-app", "Leaky", REDIRECT_URI)
        gateway_id = register_consumer(server, "gateway", "Gateway", REDIRECT_URI)
        add_user(server, "bob", PASSWORD)
        witness.keep(consumer.client_secret, gateway_id.client_secret)
        witness.secrets.add(
            basic_auth(consumer.client_id, consumer.client_secret).split()[1]
        )

        gateway_env = server_env(
            tmp_path / "gateway",
            **shared,
            OAUTH_TAI_LOG_FORMAT="json",
            OAUTH_TAI_INTROSPECTION_URL=server.base + ENDPOINT + "/introspect",
            OAUTH_TAI_INTROSPECTION_CLIENT_ID="gateway",
            OAUTH_TAI_INTROSPECTION_CLIENT_SECRET=gateway_id.client_secret,
        )
        gateway = start_gateway(gateway_env, tmp_path / "gateway.log")
        processes.append(gateway)

        # Consent, code, the API, the gateway, introspection, refresh.
        first = _code_flow(witness, server.base, consumer, replay=True)
        tokens = _code_flow(witness, server.base, consumer)
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        http = witness.session()
        assert http.get(server.base + PROFILE, headers=bearer).status_code == 200
        posted = http.post(
            server.base + API + "/ublog/@me/@all",
            json={"content": "hello"},
            headers=bearer,
        )
        assert posted.status_code == 201
        decided = http.get(
            gateway.base + "/auth",
            headers={**bearer, "X-Original-Method": "GET", "X-Original-URI": "/x"},
        )
        assert decided.status_code == 200
        introspected = http.post(
            server.base + INTROSPECT,
            data={"token": tokens["access_token"]},
            headers={"Authorization": basic_auth("leaky-app", consumer.client_secret)},
        )
        assert introspected.json()["active"] is True

        refreshed = post_token(
            http,
            server.base,
            consumer,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        ).json()
        witness.keep(refreshed["access_token"], refreshed["refresh_token"])
        check = server.cli("check-token", input=refreshed["access_token"] + "\n")
        printed += [check.stdout, check.stderr]

        # A reused refresh token, a revoked access token, Application Access.
        reused = post_token(
            http,
            server.base,
            consumer,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert reused.status_code == 400
        assert http.get(server.base + PROFILE, headers=bearer).status_code == 401
        http.post(
            server.base + REVOKE,
            data={"token": first["refresh_token"]},
            headers={"Authorization": basic_auth("leaky-app", consumer.client_secret)},
        )
        third = _code_flow(witness, server.base, consumer)
        gone = http.delete(
            f"{server.base}{APPS_API}/client/leaky-app", auth=("bob", PASSWORD)
        )
        assert gone.status_code == 204
        after = {"Authorization": f"Bearer {third['access_token']}"}
        assert http.get(server.base + PROFILE, headers=after).status_code == 401
        _attacks(witness, server, consumer)

        disabled = server.cli("clients", "edit", "leaky-app", "--disable")
        printed += [disabled.stdout, disabled.stderr]
    finally:
        stop_server(server)
        gateway.stop()

    logs = server.log() + gateway.log() + "".join(printed)
    stored = _redis_contents(redis_url, redis_prefix)

    # The scan would prove nothing if nothing had been written.
    assert " DEBUG " in server.log() and '"level": "DEBUG"' in gateway.log()
    assert "event=token_issued" in server.log()
    assert any(key.startswith(redis_prefix) for key in stored)
    assert len(witness.error_bodies) >= 6

    places = {
        "the logs": logs,
        "Redis": "\n".join(stored),
        "an error body": "\n".join(witness.error_bodies),
    }
    for where, text in places.items():
        leaked = sorted(s for s in witness.forms() if s in text)
        assert not leaked, f"{len(leaked)} secrets found in {where}"
