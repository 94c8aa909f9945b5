"""Throwaway servers for the benchmarks: all on loopback, all stopped at the end.

Every process started here belongs to one :class:`Processes`, which ends
them (by their own pid) when the run finishes or fails. Nothing here talks
to a server the benchmarks did not start.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after 30 s")


class Processes:
    """The processes one benchmark run started; all ended on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end(list(reversed(self._started)))

    def stop(self, pids: set[int]) -> None:
        """End the processes started here with these pids, before the run ends."""
        ending = [process for process in self._started if process.pid in pids]
        self._end(ending)
        self._started = [p for p in self._started if p not in ending]

    @staticmethod
    def _end(processes: list[subprocess.Popen[bytes]]) -> None:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def start(
        self,
        name: str,
        command: list[str],
        port: int,
        env: dict[str, str],
        cpus: set[int] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``command``, logging to a file, and wait for ``port``.

        :param cpus: the CPUs it and its children may run on; all when None.
        """
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                preexec_fn=None if cpus is None else lambda: pin(cpus),
            )
        self._started.append(process)
        wait_for_port(port, process, log)
        return process


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """CPUs for the server and for the load generator, apart if there are two.

    On a shared two-core machine, a server and wrk that take turns on both
    cores measure the scheduler as much as the server; one core each makes
    a run repeatable.
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return {available[-1]}, {available[0]}


def pin(cpus: set[int]) -> None:
    """Keep the calling process, and what it starts, on ``cpus``."""
    os.sched_setaffinity(0, cpus)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any oauth-tai or gunicorn setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OAUTH_TAI_", "GUNICORN_"))
    }
    env.update(extra)
    return env


def start_redis(processes: Processes) -> str:
    """Start a throwaway redis-server; return its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("make bench needs redis-server (apt-get install redis-server)")

    port = free_port()
    workdir = processes.workdir / "redis"
    workdir.mkdir()
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    processes.start("redis", command, port, clean_env())
    return f"redis://127.0.0.1:{port}/0"


def start_oauth_tai(processes: Processes, var_dir: Path) -> str:
    """Start ``oauth-tai serve`` (one process) on its own database; return its URL."""
    port = free_port()
    command = [sys.executable, "-m", "oauth_tai.cli", "serve", "--port", str(port)]
    env = clean_env(OAUTH_TAI_VAR_DIR=str(var_dir), OAUTH_TAI_LOG_LEVEL="WARNING")
    processes.start("oauth-tai", command, port, env)
    return f"http://127.0.0.1:{port}"


def start_gunicorn(
    processes: Processes,
    app: str,
    worker_class: str,
    *,
    workers: int,
    threads: int,
    env: dict[str, str],
) -> tuple[str, int]:
    """Start gunicorn serving ``app`` (``module:factory()``).

    Returns its URL and the pid of its master process.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--no-control-socket",
        "--log-level",
        "warning",
        app,
    ]
    name = f"gunicorn-{app.split(':')[1].rstrip('()')}-{worker_class}-{port}"
    server_cpus, _load_cpus = split_cpus()
    master = processes.start(name, command, port, clean_env(**env), server_cpus)
    return f"http://127.0.0.1:{port}", master.pid


def cpu_seconds_of_children(parent: int) -> float:
    """Return the CPU time, user and system, used so far by ``parent``'s children."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone since the listing

        # After the command name in parentheses: state, ppid, ... utime and
        # stime are the 12th and 13th fields from there.
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == parent:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


class JwksServer:
    """Publish one JWKS on a loopback port, from a thread of this process.

    :param jwks: the document to serve at ``/jwks``.
    """

    def __init__(self, jwks: dict[str, Any]) -> None:
        body = json.dumps(jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/jwks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
