"""What the operations tests share: reading metrics, and running a gateway."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Process, free_port, wait_for_port
from tests.oauth_client import loopback_session

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Return every sample that ``url`` (a ``/metrics``) exposes."""
    answer = loopback_session().get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples[(sample.name, labels)] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """Return one sample's value; 0 for a series that was never touched."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def start_process(
    command: list[str], env: dict[str, str], log_path: Path, port: int
) -> Process:
    """Start ``command`` with its output in ``log_path``; wait for ``port``."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    started = Process(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_for_port(port, process)
    except RuntimeError:
        started.stop()
        raise RuntimeError(started.log()) from None
    return started


def start_gateway(env: dict[str, str], log_path: Path, *args: str) -> Process:
    """Start ``oauth-tai gateway`` with ``args`` on a free loopback port."""
    port = free_port()
    command = [
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
    return start_process(command, env, log_path, port)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Processes a test started; each is stopped when it ends."""
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()
