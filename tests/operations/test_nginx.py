"""deploy/nginx in front of the provider, the gateway and an API, over TLS.

A copy of the configuration, changed only in its ports, certificate and
snippet paths, passes ``nginx -t`` and then runs, on loopback, with a
self-signed certificate made here: the whole flow goes through it, the
gateway decides for ``/api/``, identity headers a client sends never reach
the API, a revoked application is refused, and a gateway that is down
gives 503 with ``Retry-After``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.certificates import self_signed_certificate
from tests.conftest import (
    LiveServer,
    free_port,
    server_env,
    start_server,
    stop_server,
)
from tests.oauth_client import (
    PASSWORD,
    PROFILE,
    REDIRECT_URI,
    add_user,
    authorization_url,
    authorize_as_user,
    loopback_session,
    post_token,
    register_consumer,
)
from tests.operations.conftest import (
    Process,
    scrape,
    start_gateway,
    start_process,
    value,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
APPS_API = "/oauth2/authzMgmt/connectionsProvider"

# The revocation feed is read every second; this bounds the wait for it.
FEED_DEADLINE_SECONDS = 10.0


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"deploy/nginx no longer has {old!r}"
    return text.replace(old, new)


def _nginx_config(
    directory: Path, ports: dict[str, int], cert: Path, key: Path
) -> Path:
    """Write the test's copy of deploy/nginx and a main file around it."""
    snippets = directory / "snippets"
    shutil.copytree(DEPLOY / "nginx" / "snippets", snippets)
    site = (DEPLOY / "nginx" / "oauth-tai.conf").read_text()
    for old, new in [
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{ports['provider']};"),
        ("server 127.0.0.1:8081;", f"server 127.0.0.1:{ports['gateway']};"),
        ("server 127.0.0.1:9000;", f"server 127.0.0.1:{ports['api']};"),
        ("listen 80;", f"listen 127.0.0.1:{ports['http']};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{ports['https']} ssl;"),
        ("/etc/ssl/oauth-tai/fullchain.pem", str(cert)),
        ("/etc/ssl/oauth-tai/privkey.pem", str(key)),
        ("/etc/nginx/snippets/", f"{snippets}/"),
    ]:
        site = _replace(site, old, new)
    (directory / "oauth-tai.conf").write_text(site)

    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = directory / "nginx.conf"
    main.write_text(
        f"""user root root;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp}
    include {directory / "oauth-tai.conf"};
}}
"""
    )
    return main


def _nginx() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(found).exists(), "nginx is missing: run make deploy-tools"
    return found


def test_nginx_fronts_provider_gateway_and_api(
    tmp_path: Path, processes: list[Process]
) -> None:
    ports = {name: free_port() for name in ("http", "https", "api")}
    https = f"https://127.0.0.1:{ports['https']}"
    var = tmp_path / "var"
    server = start_server(var, OAUTH_TAI_PUBLIC_URL=https)
    try:
        ports["provider"] = int(server.base.rsplit(":", 1)[1])
        gateway = start_gateway(
            server_env(var), tmp_path / "gateway.log", "--prefix", "/api/"
        )
        processes.append(gateway)
        ports["gateway"] = int(gateway.base.rsplit(":", 1)[1])
        api = start_process(
            [sys.executable, str(DEPLOY / "examples" / "whoami.py"), str(ports["api"])],
            server_env(var),
            tmp_path / "api.log",
            ports["api"],
        )
        processes.append(api)

        cert, key = self_signed_certificate(tmp_path)
        config = _nginx_config(tmp_path, ports, cert, key)
        checked = subprocess.run(
            [
                _nginx(),
                "-t",
                "-p",
                str(tmp_path),
                "-c",
                str(config),
                "-e",
                str(tmp_path / "error.log"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert checked.returncode == 0, checked.stderr
        assert "syntax is ok" in checked.stderr
        nginx = start_process(
            [
                _nginx(),
                "-p",
                str(tmp_path),
                "-c",
                str(config),
                "-e",
                str(tmp_path / "error.log"),
                "-g",
                "daemon off;",
            ],
            server_env(var),
            tmp_path / "nginx.out",
            ports["https"],
        )
        processes.append(nginx)

        _flow_through(server, gateway, https, ports, cert)
    finally:
        stop_server(server)


def _session(cert: Path) -> requests.Session:
    session = loopback_session()
    session.verify = str(cert)
    return session


def _flow_through(
    server: LiveServer,
    gateway: Process,
    https: str,
    ports: dict[str, int],
    cert: Path,
) -> None:
    consumer = register_consumer(server, "edge-app", "Edge App", REDIRECT_URI)
    add_user(server, "bob")
    browser = _session(cert)
    redirect = authorize_as_user(browser, authorization_url(https, consumer), "bob")
    exchange = {
        "grant_type": "authorization_code",
        "code": redirect["code"],
        "redirect_uri": consumer.redirect_uri,
    }
    tokens = post_token(_session(cert), https, consumer, exchange)
    assert tokens.status_code == 200, tokens.text
    token = tokens.json()["access_token"]
    http = _session(cert)

    # The gateway decides; the API sees the verified identity only.
    spoofed = {
        "Authorization": f"Bearer {token}",
        "X-Auth-User": "mallory",
        "X-Auth-Scope": "admin",
        "X-Forwarded-Method": "DELETE",
    }
    answer = http.get(https + "/api/reports?year=2026", headers=spoofed, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "path": "/api/reports?year=2026",
        "identity": {
            "X-Auth-User": ["bob"],
            "X-Auth-Consumer": ["edge-app"],
            "X-Auth-Consumer-Name": ["Edge App"],
            "X-Auth-Scope": ["connections"],
        },
    }

    refused = http.get(https + "/api/reports", timeout=30)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith('Bearer realm="oauth-tai"')

    profile = http.get(
        https + PROFILE, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert profile.json()["entry"]["userName"] == "bob"
    assert http.get(https + "/metrics", timeout=30).status_code == 404
    plain = loopback_session().get(
        f"http://127.0.0.1:{ports['http']}/api/x", allow_redirects=False, timeout=30
    )
    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://127.0.0.1/api/x"

    # Bob revokes the application; the gateway hears of it and refuses.
    before = scrape(gateway.base + "/metrics")
    gone = http.delete(
        f"{https}{APPS_API}/client/edge-app", auth=("bob", PASSWORD), timeout=30
    )
    assert gone.status_code == 204
    status = 200
    give_up = time.monotonic() + FEED_DEADLINE_SECONDS
    while status == 200 and time.monotonic() < give_up:
        time.sleep(0.2)
        status = http.get(
            https + "/api/reports",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).status_code
    assert status == 401
    after = scrape(gateway.base + "/metrics")
    heard = "oauth_tai_revocations_received_total"
    assert value(after, heard, channel="feed") > value(before, heard, channel="feed")

    # Without the gateway nothing gets through, and the client may retry.
    gateway.stop()
    down = http.get(
        https + "/api/reports", headers={"Authorization": "Bearer x"}, timeout=30
    )
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "5"
