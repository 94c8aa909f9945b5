"""`oauth-tai gateway` as the decision endpoint for nginx and Traefik."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote

import pytest
import requests
from werkzeug.serving import make_server

from oauth_tai.cache import TokenCache
from oauth_tai.gateway import DecisionApp, IdentityHeaders
from oauth_tai.rules import InterceptPolicy, InterceptRule
from oauth_tai.validators.introspection import IntrospectionClient
from tests.conftest import free_port
from tests.gateway.conftest import (
    CONSUMER_ID,
    CONSUMER_NAME,
    ENDPOINT,
    RESOURCE_SERVER_ID,
    USER,
    Deployment,
    Process,
)

StartGateway = Callable[..., Process]


def nginx(method: str, uri: str, token: str | None = None) -> dict[str, str]:
    """The headers nginx's auth_request sends, as the README configures it."""
    headers = {"X-Original-Method": method, "X-Original-URI": uri}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def traefik(method: str, uri: str, token: str | None = None) -> dict[str, str]:
    """The headers Traefik's ForwardAuth sends."""
    headers = {
        "X-Forwarded-Method": method,
        "X-Forwarded-Uri": uri,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example",
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def ask(gateway: Process, headers: dict[str, str]) -> requests.Response:
    return requests.get(gateway.base + "/auth", headers=headers, timeout=10)


@pytest.fixture(scope="module")
def decision(deployment: Deployment, start_gateway: StartGateway) -> Process:
    """A decision endpoint guarding /api/ but not /api/public/."""
    return start_gateway(
        deployment.remote_env(), "--prefix", "/api/", "--exclude", "/api/public/"
    )


def test_valid_token_gets_200_with_the_identity(
    deployment: Deployment, decision: Process
) -> None:
    """The answer names the user, the consumer and the scopes for the proxy."""
    answer = ask(decision, nginx("GET", "/api/reports?year=2024", deployment.token))

    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Auth-User"] == USER
    assert answer.headers["X-Auth-Consumer"] == CONSUMER_ID
    assert answer.headers["X-Auth-Scope"] == "connections"
    # Not ASCII: percent-encoded UTF-8, so no header can carry raw bytes.
    encoded = answer.headers["X-Auth-Consumer-Name"]
    assert encoded.isascii()
    assert unquote(encoded) == CONSUMER_NAME


def test_no_token_gets_401_with_a_challenge(decision: Process) -> None:
    """RFC 6750 §3.1: a request without credentials gets no error code."""
    answer = ask(decision, nginx("GET", "/api/reports"))

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="oauth-tai"'
    assert "X-Auth-User" not in answer.headers


def test_unknown_token_gets_401_invalid_token(decision: Process) -> None:
    """A token the provider never issued is refused with invalid_token."""
    answer = ask(decision, nginx("POST", "/api/reports", secrets.token_urlsafe(32)))

    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="oauth-tai", error="invalid_token"')
    assert answer.json()["error"] == "invalid_token"
    assert "X-Auth-User" not in answer.headers


def test_malformed_authorization_gets_400(decision: Process) -> None:
    """A header that is not one bearer token is the client's mistake."""
    headers = nginx("GET", "/api/reports")
    headers["Authorization"] = "Bearer two tokens"

    answer = ask(decision, headers)

    assert answer.status_code == 400
    assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]


def test_traefik_headers_decide_like_nginx_ones(
    deployment: Deployment, decision: Process
) -> None:
    """X-Forwarded-Method and X-Forwarded-Uri name the original request."""
    allowed = ask(decision, traefik("DELETE", "/api/reports/7", deployment.token))
    refused = ask(decision, traefik("DELETE", "/api/reports/7"))
    public = ask(decision, traefik("GET", "/api/public/status"))

    assert allowed.status_code == 200
    assert allowed.headers["X-Auth-User"] == USER
    assert refused.status_code == 401
    assert public.status_code == 200


def test_path_the_policy_leaves_alone_gets_200_without_identity(
    deployment: Deployment, decision: Process
) -> None:
    """Outside the prefixes, or excluded: allowed, and nobody is named."""
    for uri in ("/", "/about", "/api/public/status"):
        answer = ask(decision, nginx("GET", uri, deployment.token))

        assert answer.status_code == 200, uri
        assert "X-Auth-User" not in answer.headers
        assert "X-Auth-Consumer" not in answer.headers


def test_dot_segments_cannot_walk_out_of_a_guarded_path(
    decision: Process,
) -> None:
    """The policy judges the path the upstream will serve, not the raw URI."""
    for uri in (
        "/api/public/../reports",
        "/api/public/%2e%2e/reports",
        "/about/..//api/reports",
        "//api//reports",
    ):
        answer = ask(decision, nginx("GET", uri))

        assert answer.status_code == 401, uri


def test_path_parameters_cannot_hide_a_guarded_path(decision: Process) -> None:
    """Java upstreams drop ;parameters: /api;x/ is /api/ to them, so to us."""
    for uri in ("/api;/reports", "/api;jsessionid=1/x", "/api/reports;v=2"):
        answer = ask(decision, nginx("GET", uri))

        assert answer.status_code == 401, uri

    # ..; climbs in Java and is a name elsewhere: no single reading is safe.
    for uri in ("/api/public/..;/x", "/api/public/..%3B/x", "/about/..;/api/x"):
        answer = ask(decision, nginx("GET", uri))

        assert answer.status_code == 400, uri
        assert "X-Auth-User" not in answer.headers


def test_client_cannot_choose_the_request_that_is_judged(
    deployment: Deployment, decision: Process
) -> None:
    """Both kinds of original-request headers: one came from the client."""
    # Traefik names the guarded request; the client adds a public one.
    headers = {**traefik("GET", "/api/reports"), **nginx("GET", "/api/public/a")}
    missing_method = {"X-Original-URI": "/api/reports"}

    mixed = ask(decision, headers)
    partial = ask(decision, missing_method)

    assert mixed.status_code == 400
    assert partial.status_code == 400
    assert mixed.json()["error"] == "invalid_request"


def test_only_auth_is_answered(decision: Process) -> None:
    """Any other path of the gateway is 404, never a decision."""
    answer = requests.get(
        decision.base + "/api/reports", headers=nginx("GET", "/"), timeout=10
    )

    assert answer.status_code == 404


def test_unreachable_provider_gets_503_with_retry_after(
    deployment: Deployment, start_gateway: StartGateway
) -> None:
    """No answer from the provider: retry later, the token is not judged."""
    closed = f"http://127.0.0.1:{free_port()}{ENDPOINT}/introspect"
    gateway = start_gateway(deployment.remote_env(closed))

    answer = ask(gateway, nginx("GET", "/api/reports", deployment.token))

    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) > 0
    assert answer.json()["error"] == "temporarily_unavailable"


def test_a_remote_gateway_without_redis_warns_revocations_go_unheard(
    decision: Process,
) -> None:
    """It cannot hear revocations: the operator is told for how long."""
    assert "a revoked token may be accepted for up to 300 s" in decision.log()


def test_local_store_gateway_follows_revocations(
    deployment: Deployment, start_gateway: StartGateway
) -> None:
    """Without a remote provider the gateway reads the database, and its feed."""
    token, grant_id = deployment.issue("bob")
    gateway = start_gateway(deployment.server.env)

    before = ask(gateway, nginx("GET", "/api/reports", token))
    deployment.provider.store.revoke_grant(grant_id)
    after = wait_for_status(gateway, nginx("GET", "/api/reports", token), 401)

    assert before.status_code == 200
    assert before.headers["X-Auth-User"] == "bob"
    assert after.status_code == 401, gateway.log()


def wait_for_status(
    gateway: Process, headers: dict[str, str], status: int
) -> requests.Response:
    """Ask until the answer has ``status``, for at most 10 s; the last answer."""
    deadline = time.monotonic() + 10
    while True:
        answer = ask(gateway, headers)
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


@contextmanager
def serving(app: DecisionApp) -> Iterator[str]:
    """Serve ``app`` on a loopback port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()


def test_rule_scopes_and_renamed_headers_apply(deployment: Deployment) -> None:
    """A rule's missing scope is 403; headers take the names configured."""
    app = DecisionApp(
        IntrospectionClient(
            deployment.server.base + ENDPOINT + "/introspect",
            RESOURCE_SERVER_ID,
            deployment.resource_server_secret,
        ),
        TokenCache(secrets.token_bytes(32)),
        policy=InterceptPolicy(
            [
                InterceptRule("/admin/", scopes=frozenset({"admin"})),
                InterceptRule("/api/"),
            ]
        ),
        headers=IdentityHeaders(user="X-Remote-User"),
    )

    with serving(app) as base:
        admin = requests.get(
            base + "/auth",
            headers=nginx("GET", "/admin/users", deployment.token),
            timeout=10,
        )
        api = requests.get(
            base + "/auth",
            headers=nginx("GET", "/api/reports", deployment.token),
            timeout=10,
        )

    assert admin.status_code == 403
    assert 'error="insufficient_scope", ' in admin.headers["WWW-Authenticate"]
    assert 'scope="admin"' in admin.headers["WWW-Authenticate"]
    assert api.status_code == 200
    assert api.headers["X-Remote-User"] == USER
    assert "X-Auth-User" not in api.headers
