"""`oauth-tai gateway --upstream URL`: a reverse proxy that adds the identity."""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import free_port, run_cli, server_env
from tests.gateway.conftest import (
    BIG_PREFIX,
    CONSUMER_ID,
    USER,
    Deployment,
    Process,
    Upstream,
    pattern,
)

StartGateway = Callable[..., Process]

BIG = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def proxy(
    deployment: Deployment, upstream: Upstream, start_gateway: StartGateway
) -> Process:
    """A proxy to the echo upstream, guarding /api/."""
    return start_gateway(
        deployment.remote_env(),
        "--upstream",
        upstream.base + "/base",
        "--prefix",
        "/api/",
    )


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def received(response: requests.Response) -> dict[str, Any]:
    """What the upstream says it got, with header names in lower case."""
    assert response.status_code == 200, response.text
    echo: dict[str, Any] = response.json()
    pairs = echo["headers"]
    echo["headers"] = {name.lower(): value for name, value in pairs}
    echo["names"] = [name.lower() for name, _ in pairs]
    return echo


def test_identity_headers_are_added(deployment: Deployment, proxy: Process) -> None:
    """The upstream learns the user, consumer and scope; the path is kept."""
    response = requests.get(
        proxy.base + "/api/reports?year=2024&q=a%20b",
        headers=bearer(deployment.token),
        timeout=10,
    )

    echo = received(response)
    assert echo["path"] == "/base/api/reports?year=2024&q=a%20b"
    assert echo["headers"]["x-auth-user"] == USER
    assert echo["headers"]["x-auth-consumer"] == CONSUMER_ID
    assert echo["headers"]["x-auth-scope"] == "connections"
    assert echo["headers"]["authorization"] == f"Bearer {deployment.token}"


def test_spoofed_identity_headers_are_removed(
    deployment: Deployment, proxy: Process
) -> None:
    """Whatever their spelling, on guarded and unguarded paths alike."""
    spoofs = {
        "X-Auth-User": "mallory",
        "x_auth_user": "mallory",
        "X-AUTH-CONSUMER": "trusted-app",
        "X_Auth_Scope": "admin",
    }

    guarded = received(
        requests.get(
            proxy.base + "/api/me",
            headers=bearer(deployment.token, **spoofs),
            timeout=10,
        )
    )
    open_path = received(
        requests.get(proxy.base + "/about", headers=spoofs, timeout=10)
    )

    assert guarded["headers"]["x-auth-user"] == USER
    assert guarded["names"].count("x-auth-user") == 1
    assert guarded["headers"]["x-auth-consumer"] == CONSUMER_ID
    assert guarded["headers"]["x-auth-scope"] == "connections"
    assert "mallory" not in json.dumps(guarded)
    assert not [
        n for n in open_path["names"] if n.replace("_", "-").startswith("x-auth")
    ]


def test_hop_by_hop_headers_stop_at_the_gateway(
    deployment: Deployment, proxy: Process
) -> None:
    """Connection and what it names, Keep-Alive, Proxy-*, TE: both ways."""
    response = requests.get(
        proxy.base + "/api/me",
        headers=bearer(
            deployment.token,
            Connection="keep-alive, X-Client-Hop",
            **{
                "X-Client-Hop": "for the gateway only",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "Basic bWFsbG9yeTpzZWNyZXQ=",
                "X-Client-End": "for the upstream",
            },
        ),
        timeout=10,
    )

    echo = received(response)
    for name in ("x-client-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in echo["headers"], name
    assert "x-client-hop" not in echo["headers"].get("connection", "").lower()
    assert echo["headers"]["x-client-end"] == "for the upstream"

    for name in ("X-Upstream-Hop", "Keep-Alive", "Proxy-Authenticate"):
        assert name not in response.headers, name
    assert "x-upstream-hop" not in response.headers.get("Connection", "").lower()
    assert response.headers["X-Upstream-End"] == "for the client"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_forwarded_headers_are_set(
    deployment: Deployment, proxy: Process, upstream: Upstream
) -> None:
    """X-Forwarded-For extends the client's list; Proto and Host are the gateway's."""
    response = requests.get(
        proxy.base + "/api/me",
        headers=bearer(
            deployment.token,
            **{
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Host": "spoofed.example",
                "X-Forwarded-Proto": "https",
            },
        ),
        timeout=10,
    )

    echo = received(response)
    assert echo["headers"]["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert echo["headers"]["x-forwarded-host"] == urlsplit(proxy.base).netloc
    assert echo["headers"]["x-forwarded-proto"] == "http"
    assert echo["headers"]["host"] == urlsplit(upstream.base).netloc


def test_hide_token_keeps_the_token_from_the_upstream(
    deployment: Deployment, upstream: Upstream, start_gateway: StartGateway
) -> None:
    """With --hide-token the upstream sees the identity, never the token."""
    hiding = start_gateway(
        deployment.remote_env(), "--upstream", upstream.base, "--hide-token"
    )

    echo = received(
        requests.get(
            hiding.base + "/notes", headers=bearer(deployment.token), timeout=10
        )
    )

    assert echo["headers"]["x-auth-user"] == USER
    assert "authorization" not in echo["headers"]
    assert deployment.token not in json.dumps(echo)


def test_large_bodies_pass_through_intact(
    deployment: Deployment, proxy: Process
) -> None:
    """5 MB up and 5 MB down, byte for byte."""
    upload = secrets.token_bytes(BIG)

    posted = received(
        requests.post(
            proxy.base + "/api/upload",
            data=upload,
            headers=bearer(deployment.token, **{"Content-Type": "application/x-blob"}),
            timeout=30,
        )
    )
    downloaded = requests.get(
        proxy.base + f"/api{BIG_PREFIX}{BIG}",
        headers=bearer(deployment.token),
        timeout=30,
    )

    assert posted["method"] == "POST"
    assert posted["body_length"] == BIG
    assert posted["body_sha256"] == hashlib.sha256(upload).hexdigest()
    assert posted["headers"]["content-type"] == "application/x-blob"
    assert downloaded.status_code == 200
    assert downloaded.content == pattern(BIG)


def test_chunked_upload_passes_through(deployment: Deployment, proxy: Process) -> None:
    """A body without Content-Length goes upstream chunked, byte for byte."""
    pieces = [secrets.token_bytes(100_000) for _ in range(20)]

    echo = received(
        requests.put(
            proxy.base + "/api/upload",
            data=iter(pieces),
            headers=bearer(deployment.token),
            timeout=30,
        )
    )

    assert echo["headers"]["transfer-encoding"] == "chunked"
    assert echo["body_length"] == sum(len(piece) for piece in pieces)
    assert echo["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_refused_requests_never_reach_the_upstream(
    proxy: Process, upstream: Upstream
) -> None:
    """No token, a bad token, a dot-segment detour: refused at the gateway."""
    before = len(upstream.requests)

    missing = requests.post(proxy.base + "/api/notes", data=b"x" * 1000, timeout=10)
    unknown = requests.get(
        proxy.base + "/api/notes", headers=bearer(secrets.token_urlsafe(32)), timeout=10
    )
    # urllib3 would resolve the dot segments itself: send the path as is.
    connection = http.client.HTTPConnection(urlsplit(proxy.base).netloc, timeout=10)
    connection.request("GET", "/public/../api/notes")
    detour = connection.getresponse()
    connection.close()

    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="oauth-tai"'
    assert unknown.status_code == 401
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    assert detour.status == 401
    assert len(upstream.requests) == before


def send_as_is(
    proxy: Process, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Send ``path`` unresolved, as ``curl --path-as-is`` does."""
    connection = http.client.HTTPConnection(urlsplit(proxy.base).netloc, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    answer = response.status, response.read()
    connection.close()
    return answer


def test_path_parameters_are_judged_as_java_reads_them(
    deployment: Deployment, proxy: Process, upstream: Upstream
) -> None:
    """/api;/x is /api/x to Tomcat: it needs a token, and keeps its parameters."""
    before = len(upstream.requests)

    bare = send_as_is(proxy, "/api;/x")
    session = send_as_is(proxy, "/api;jsessionid=1/x")
    climb = send_as_is(proxy, "/public/..;/api/x")
    assert len(upstream.requests) == before

    status, body = send_as_is(proxy, "/api;jsessionid=1/x", bearer(deployment.token))

    assert bare[0] == 401
    assert session[0] == 401
    assert climb[0] == 400
    assert json.loads(climb[1])["error"] == "invalid_request"
    assert status == 200
    assert json.loads(body)["path"] == "/base/api;jsessionid=1/x"


def test_unreachable_upstream_gets_502(
    deployment: Deployment, start_gateway: StartGateway
) -> None:
    """Nothing listens at the upstream: 502 with a JSON error."""
    down = start_gateway(
        deployment.remote_env(), "--upstream", f"http://127.0.0.1:{free_port()}"
    )

    response = requests.get(
        down.base + "/api/me", headers=bearer(deployment.token), timeout=10
    )

    assert response.status_code == 502
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "bad_gateway"


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/", "127.0.0.1:9000", "http://127.0.0.1:99999", "http://"]
)
def test_bad_upstream_is_a_one_line_error(tmp_path: Any, url: str) -> None:
    """The command refuses before it listens, with one line on stderr."""
    env = server_env(tmp_path / "var")
    done = run_cli(env, "gateway", "--port", str(free_port()), "--upstream", url)

    assert done.returncode == 1
    assert done.stderr.startswith("oauth-tai: error: the upstream must be")
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "var" / "oauth-tai.db").exists()
