"""A real provider, real gateway processes and a real upstream, on loopback.

The provider (``oauth-tai serve``) and the tokens on it are set up once
per test module and database; each gateway configuration runs as its own
``oauth-tai gateway`` process, started once per module and asked by
several tests.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from oauth_tai.system import Provider, open_provider
from tests.conftest import (
    LiveServer,
    Process,
    database_env,
    free_port,
    server_env,
    start_server,
    stop_server,
    wait_for_port,
)

ENDPOINT = "/oauth2/endpoint/connectionsProvider"
CONSUMER_ID = "report-app"
# Not ASCII: the name reaches the upstream percent-encoded.
CONSUMER_NAME = "Café Reports ✓"
RESOURCE_SERVER_ID = "gateway"
USER = "alice"


@dataclass
class Deployment:
    """The provider in its own process, with a consumer and a user's token."""

    server: LiveServer
    provider: Provider
    token: str
    resource_server_secret: str
    workdir: Path

    def remote_env(self, introspection_url: str | None = None) -> dict[str, str]:
        """The environment of a gateway that asks the provider over HTTP."""
        var_dir = self.workdir / f"gateway-{secrets.token_hex(4)}"
        return server_env(
            var_dir,
            OAUTH_TAI_INTROSPECTION_URL=introspection_url
            or self.server.base + ENDPOINT + "/introspect",
            OAUTH_TAI_INTROSPECTION_CLIENT_ID=RESOURCE_SERVER_ID,
            OAUTH_TAI_INTROSPECTION_CLIENT_SECRET=self.resource_server_secret,
        )

    def issue(self, user: str, scope: str = "connections") -> tuple[str, int]:
        """Return a new access token of ``user`` for the consumer, and its grant."""
        grant_id = self.provider.store.consent(user, CONSUMER_ID, scope)
        token = secrets.token_urlsafe(32)
        self.provider.store.issue(grant_id, token, None, 3600)
        return token, grant_id


def register(server: LiveServer, client_id: str, name: str) -> str:
    added = server.cli(
        "clients",
        "add",
        client_id,
        "--name",
        name,
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    secret: str = json.loads(added.stdout)["client_secret"]
    return secret


@pytest.fixture(scope="module")
def deployment(
    request: pytest.FixtureRequest,
    database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """``oauth-tai serve`` on this module's own database, and a live token."""
    schema, url = None, ""
    if database == "postgresql":
        schemas = request.getfixturevalue("postgres_schemas")
        schema, url = schemas.create()

    workdir = tmp_path_factory.mktemp("gateway")
    server = start_server(workdir / "provider", **database_env(url))
    provider = open_provider(server.settings())
    try:
        register(server, CONSUMER_ID, CONSUMER_NAME)
        secret = register(server, RESOURCE_SERVER_ID, "The gateway")
        provider.users.add(USER, "alice-password")
        deployment = Deployment(server, provider, "", secret, workdir)
        deployment.token, _grant = deployment.issue(USER)
        yield deployment
    finally:
        provider.engine.dispose()
        stop_server(server)
        if schema is not None:
            schemas.drop(schema)


def gateway_command(port: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "oauth_tai.cli",
        "gateway",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]


@pytest.fixture(scope="module")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Process]]:
    """Start gateways on demand; stop them all at the end of the module."""
    started: list[Process] = []
    logs = tmp_path_factory.mktemp("gateway-logs")

    def start(env: dict[str, str], *args: str) -> Process:
        port = free_port()
        log_path = logs / f"{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                gateway_command(port, *args),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        gateway = Process(f"http://127.0.0.1:{port}", process, log_path)
        started.append(gateway)
        try:
            wait_for_port(port, process)
        except RuntimeError:
            raise RuntimeError(gateway.log()) from None
        return gateway

    yield start
    for gateway in started:
        gateway.process.terminate()
        try:
            gateway.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gateway.process.kill()


# -- the upstream --------------------------------------------------------------

# A path ending in /big/<n> asks for n bytes of pattern(n).
BIG_PREFIX = "/big/"


def pattern(size: int) -> bytes:
    """``size`` bytes that no truncation or reordering leaves unchanged."""
    block = hashlib.sha256(b"oauth-tai").digest() * 2048
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


@dataclass
class Upstream:
    """An HTTP server that tells what it received, and counts requests."""

    base: str
    requests: list[str] = field(default_factory=list)


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: Upstream

    def _answer(self) -> None:
        self.upstream.requests.append(f"{self.command} {self.path}")
        digest = hashlib.sha256()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            length = self._read_chunks(digest)
        else:
            length = self._read(int(self.headers.get("Content-Length") or 0), digest)

        if BIG_PREFIX in self.path:
            body = pattern(int(self.path.rsplit(BIG_PREFIX, 1)[1]))
            content_type = "application/octet-stream"
        else:
            body = json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": list(self.headers.items()),
                    "body_length": length,
                    "body_sha256": digest.hexdigest(),
                }
            ).encode()
            content_type = "application/json"

        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # Hop-by-hop headers the gateway must not pass on to the client.
        self.send_header("Connection", "keep-alive, X-Upstream-Hop")
        self.send_header("X-Upstream-Hop", "for the gateway only")
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("Proxy-Authenticate", 'Basic realm="upstream"')
        self.send_header("X-Upstream-End", "for the client")
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def _read(self, length: int, digest: Any) -> int:
        left = length
        while left > 0:
            piece = self.rfile.read(min(left, 65536))
            if not piece:
                break
            digest.update(piece)
            left -= len(piece)
        return length - left

    def _read_chunks(self, digest: Any) -> int:
        # RFC 9112 §7.1, without chunk extensions or trailers.
        total = 0
        while size := int(self.rfile.readline().strip(), 16):
            total += self._read(size, digest)
            self.rfile.readline()
        self.rfile.readline()
        return total

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """The echo upstream, in a thread of the test process."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    found = Upstream(f"http://127.0.0.1:{server.server_address[1]}")
    handler = type("Handler", (_EchoHandler,), {"upstream": found})
    server.RequestHandlerClass = handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()
