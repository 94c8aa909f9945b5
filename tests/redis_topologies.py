"""Throwaway Redis topologies on loopback: Sentinel, Cluster, TLS, Unix socket.

Each starts ``redis-server`` processes of its own on free loopback ports,
in a folder of its own, and stops them all when closed. They need the
Redis server and its command-line client; without them the test fails
with how to install them, as a test that cannot run is not a pass.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from redis.sentinel import Sentinel

from tests.certificates import self_signed_certificate
from tests.conftest import free_port, wait_for_port

REDIS_TOOLS_HELP = (
    "These tests start their own Redis Sentinel and Redis Cluster, with "
    "redis-server and redis-cli: install them (Debian: apt-get install "
    "redis-server redis-tools; `make test` does it when run as root)."
)

SERVICE = "oauth-tai"
MASTER_PASSWORD = "master-secret-in-the-url"
SENTINEL_PASSWORD = "sentinel-secret-in-the-url"

# Bounds a wait for the servers to agree; it measures nothing.
READY_SECONDS = 20.0


def need(command: str) -> str:
    """Return the path of ``command``; fail the test, saying how to get it."""
    found = shutil.which(command)
    if found is None:
        pytest.fail(f"{command} is missing. {REDIS_TOOLS_HELP}")
    return found


class Servers:
    """``redis-server`` processes started here, each in a folder of its own."""

    def __init__(self, workdir: Path) -> None:
        self.binary = need("redis-server")
        self.workdir = workdir
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, *options: str, config: str | None = None) -> None:
        folder = self.workdir / str(port)
        folder.mkdir()
        command = [self.binary]
        if config is not None:
            # A Sentinel rewrites its configuration file as it learns.
            (folder / "redis.conf").write_text(config)
            command.append(str(folder / "redis.conf"))
        command += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        command += ["--save", "", "--appendonly", "no", *options]
        process = subprocess.Popen(
            command,
            stdout=open(folder / "log", "wb"),
            stderr=subprocess.STDOUT,
        )
        self.processes[port] = process
        wait_for_port(port, process)

    def kill(self, port: int) -> None:
        """End the server on ``port`` at once, as a crash would."""
        process = self.processes.pop(port)
        process.kill()
        _reap(process)

    def close(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            _reap(process)
        self.processes.clear()


def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


class SentinelRedis:
    """A master with a password, watched by one Sentinel with another.

    With ``replica``, a replica of the master too, which :meth:`failover`
    makes the master. ``url`` names them the way ``OAUTH_TAI_REDIS_URL``
    would.
    """

    def __init__(self, workdir: Path, *, replica: bool = False) -> None:
        self.servers = Servers(workdir)
        self.master_port = free_port()
        self.replica_port = free_port() if replica else None
        self.sentinel_port = free_port()
        self.url = (
            f"redis+sentinel://:{MASTER_PASSWORD}@127.0.0.1:{self.sentinel_port}"
            f"/{SERVICE}/0?sentinel_password={SENTINEL_PASSWORD}"
        )
        self.sentinel = Sentinel(
            [("127.0.0.1", self.sentinel_port)],
            sentinel_kwargs={"password": SENTINEL_PASSWORD},
        )

    def start(self) -> None:
        # The replica syncs without waiting for others to join it.
        options = ("--requirepass", MASTER_PASSWORD, "--masterauth", MASTER_PASSWORD)
        options += ("--repl-diskless-sync-delay", "0")
        self.servers.start(self.master_port, *options)
        if self.replica_port is not None:
            replica_of = ("--replicaof", "127.0.0.1", str(self.master_port))
            self.servers.start(self.replica_port, *options, *replica_of)
            self._wait_for(self._replica_is_in_sync)

        config = "\n".join(
            [
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1",
                f"sentinel auth-pass {SERVICE} {MASTER_PASSWORD}",
                f"requirepass {SENTINEL_PASSWORD}",
                "",
            ]
        )
        self.servers.start(self.sentinel_port, "--sentinel", config=config)
        self._wait_for(lambda: self.master() == self.master_port)

    def master(self) -> int | None:
        """The port of the master the Sentinel names now, if it names one."""
        try:
            return int(self.sentinel.discover_master(SERVICE)[1])
        except redis.RedisError:
            return None

    def failover(self) -> None:
        """Kill the master; have the Sentinel make the replica the master now.

        It would on its own once the master had been silent long enough.
        """
        assert self.replica_port is not None
        self.servers.kill(self.master_port)

        def done() -> bool:
            if self.master() == self.replica_port:
                return True
            try:
                self.sentinel.sentinels[0].sentinel_failover(SERVICE)
            except redis.ResponseError:
                pass  # no replica it trusts yet, or a failover under way
            return False

        self._wait_for(done)

    def _replica_is_in_sync(self) -> bool:
        replica = redis.Redis("127.0.0.1", self.replica_port, password=MASTER_PASSWORD)
        try:
            return bool(replica.info("replication")["master_link_status"] == "up")
        finally:
            replica.close()

    def _wait_for(self, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not check():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"still not true after {READY_SECONDS} s: {check}")
            time.sleep(0.05)

    def close(self) -> None:
        for sentinel in self.sentinel.sentinels:
            sentinel.close()
        self.servers.close()


class ClusterRedis:
    """A Redis Cluster of three masters, no replicas.

    ``url`` names one node, from which a client finds the others;
    ``ports`` are every node's.
    """

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.servers = Servers(workdir)
        self.cli = need("redis-cli")
        self.ports = [free_port() for _ in range(masters)]
        self.url = f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        for port in self.ports:
            # The bus port is set too: the default (port + 10000) may be taken.
            self.servers.start(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                str(free_port()),
            )

        created = subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=READY_SECONDS,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create: {created.stdout}")
        self._wait_until_every_node_agrees()

    def _wait_until_every_node_agrees(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        for port in self.ports:
            node = redis.Redis("127.0.0.1", port)
            while node.cluster("info")["cluster_state"] != "ok":
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"the cluster node on {port} is not ready")
                time.sleep(0.05)
            node.close()

    def close(self) -> None:
        self.servers.close()


class TlsRedis:
    """One server that speaks TLS only, with a self-signed certificate.

    ``url`` names it with ``rediss://`` and trusts that certificate alone,
    so the client checks the server's as it would in production.
    """

    def __init__(self, workdir: Path) -> None:
        self.servers = Servers(workdir)
        self.workdir = workdir
        self.port = free_port()
        self.certificate, self.key = self_signed_certificate(workdir)
        self.url = (
            f"rediss://:{MASTER_PASSWORD}@127.0.0.1:{self.port}/0"
            f"?ssl_ca_certs={quote(str(self.certificate))}"
        )

    def start(self) -> None:
        self.servers.start(
            free_port(),
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.certificate),
            "--tls-key-file",
            str(self.key),
            "--tls-ca-cert-file",
            str(self.certificate),
            # Clients prove nothing with certificates here; the password
            # stands for them, as it does in most deployments.
            "--tls-auth-clients",
            "no",
            "--requirepass",
            MASTER_PASSWORD,
        )
        wait_for_port(self.port)

    def close(self) -> None:
        self.servers.close()


class UnixRedis:
    """One server, named by the path of its Unix socket."""

    def __init__(self, workdir: Path) -> None:
        self.servers = Servers(workdir)
        self.socket = workdir / "redis.sock"
        self.url = f"unix://:{MASTER_PASSWORD}@{self.socket}?db=0"

    def start(self) -> None:
        port = free_port()
        self.servers.start(
            port,
            "--unixsocket",
            str(self.socket),
            "--requirepass",
            MASTER_PASSWORD,
        )
        deadline = time.monotonic() + READY_SECONDS
        while not self.socket.exists():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no socket at {self.socket}")
            time.sleep(0.05)

    def close(self) -> None:
        self.servers.close()
