"""deploy/: every configuration parses, agrees with itself, and runs.

The Kubernetes manifests are read with PyYAML and cross-checked: every
port a probe, a Service or an annotation names exists, every probe asks
the paths oauth-tai serves, every Secret and ConfigMap reference resolves,
and every ``OAUTH_TAI_*`` variable is a real setting. The systemd units
pass ``systemd-analyze verify``. The gunicorn configurations load, and
run: both start on loopback ports with two workers each, and the
gateway's metrics add up across its workers.
"""

from __future__ import annotations

import dataclasses
import os
import re
import runpy
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from gunicorn.config import Config

from oauth_tai.health import HEALTH_PATH, READY_PATH
from oauth_tai.settings import PREFIX, Settings
from oauth_tai.tally import FLUSH_SECONDS
from oauth_tai.wsgi import on_starting
from tests.conftest import free_port, server_env
from tests.oauth_client import loopback_session
from tests.operations.conftest import Process, scrape, start_process, value

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
VARIABLES = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
OTHER_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR"}
GUNICORN = Path(sys.executable).parent / "gunicorn"

# -- Kubernetes -----------------------------------------------------------------


def _manifests() -> dict[str, dict[str, dict[str, Any]]]:
    """Every object in deploy/kubernetes, by kind and name."""
    found: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    files = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
    assert files, "no manifests"
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            assert {"apiVersion", "kind", "metadata"} <= set(document), path
            kind, name = document["kind"], document["metadata"]["name"]
            assert name not in found[kind], f"two {kind}s named {name}"
            found[kind][name] = document
    return found


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _check_environment(container: dict[str, Any], objects: Any) -> None:
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] in objects["ConfigMap"]

    for variable in container.get("env", []):
        assert variable["name"] in VARIABLES | OTHER_VARIABLES, variable["name"]
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            secret = objects["Secret"].get(ref["name"])
            assert secret is not None, f"no Secret {ref['name']}"
            assert ref["key"] in {**secret.get("data", {}), **secret["stringData"]}


def _check_probes(container: dict[str, Any], ports: dict[str, int]) -> None:
    probes = {
        kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")
    }
    assert probes["readinessProbe"]["path"] == READY_PATH
    assert probes["livenessProbe"]["path"] == HEALTH_PATH
    for probe in probes.values():
        port = probe["port"]
        assert port in ports or port in ports.values(), port


def test_kubernetes_manifests_parse_and_every_reference_resolves() -> None:
    objects = _manifests()
    deployments = objects["Deployment"]
    assert {"oauth-tai-provider", "oauth-tai-gateway"} <= set(deployments)

    for config in objects["ConfigMap"].values():
        assert set(config["data"]) <= VARIABLES | OTHER_VARIABLES

    ports_of: dict[str, dict[str, int]] = {}
    for name, deployment in deployments.items():
        template = deployment["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

        ports: dict[str, int] = {}
        for container in _containers(deployment):
            _check_environment(container, objects)
            command = container.get("command", [])
            for part in command:
                if part.startswith("/opt/oauth-tai/deploy/"):
                    assert (
                        DEPLOY / part.removeprefix("/opt/oauth-tai/deploy/")
                    ).is_file()
            if "--bind" in command:
                bound = int(command[command.index("--bind") + 1].rsplit(":", 1)[1])
                assert bound in {p["containerPort"] for p in container["ports"]}
            for port in container.get("ports", []):
                ports[port["name"]] = port["containerPort"]

        main = template["spec"]["containers"][0]
        _check_probes(main, ports)
        scraped = template["metadata"]["annotations"]["prometheus.io/port"]
        assert int(scraped) in ports.values()
        ports_of[name] = ports

    services = objects["Service"]
    for name, service in services.items():
        spec = service["spec"]
        if spec.get("type") == "ExternalName":
            assert spec["externalName"]
            continue
        targets = [
            d
            for d, deployment in deployments.items()
            if spec["selector"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"Service {name} selects {targets}"
        for port in spec["ports"]:
            target = port["targetPort"]
            assert (
                target in ports_of[targets[0]]
                or target in ports_of[targets[0]].values()
            ), (name, target)

    (autoscaler,) = objects["HorizontalPodAutoscaler"].values()
    target = autoscaler["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    scaled = deployments[target["name"]]
    assert target["name"] == "oauth-tai-gateway"
    for container in scaled["spec"]["template"]["spec"]["containers"]:
        assert container["resources"]["requests"]["cpu"]

    # Redis and PostgreSQL are reached through the external Services.
    for secret in objects["Secret"].values():
        for key in ("database-url", "redis-url"):
            url = urlsplit(secret["stringData"][key])
            service = services[url.hostname]
            assert service["spec"]["type"] == "ExternalName"
            assert url.port in {p["port"] for p in service["spec"]["ports"]}


# -- systemd ----------------------------------------------------------------------


def test_systemd_units_verify(tmp_path: Path) -> None:
    units = sorted((DEPLOY / "systemd").glob("oauth-tai-*.*"))
    assert {u.name for u in units} >= {
        "oauth-tai-provider.service",
        "oauth-tai-gateway.service",
        "oauth-tai-purge.service",
        "oauth-tai-purge.timer",
    }

    # The units name the installation the README describes; the copies
    # name this checkout's, so systemd can check the commands exist.
    venv = Path(sys.executable).parent.parent
    copies = []
    for unit in units:
        text = unit.read_text()
        for config in re.findall(r"/opt/oauth-tai/deploy/(\S+)", text):
            assert (DEPLOY / config).is_file(), config
        copy = tmp_path / unit.name
        copy.write_text(
            text.replace("/opt/oauth-tai/.venv", str(venv)).replace(
                "/opt/oauth-tai/deploy", str(DEPLOY)
            )
        )
        copies.append(str(copy))

    timer = (DEPLOY / "systemd" / "oauth-tai-purge.timer").read_text()
    (unit_name,) = re.findall(r"^Unit=(\S+)$", timer, flags=re.MULTILINE)
    assert (DEPLOY / "systemd" / unit_name).is_file()

    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run make deploy-tools"
    verified = subprocess.run(
        [analyze, "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == "", verified.stderr

    example = (DEPLOY / "systemd" / "oauth-tai.env").read_text()
    names = re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE)
    assert names and set(names) <= VARIABLES


# -- gunicorn -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["serve", "gateway"])
def test_gunicorn_configurations_load(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set, so that loading the file here makes no directory of its own.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    loaded = runpy.run_path(str(DEPLOY / "gunicorn" / f"{name}.py"))

    known = set(Config().settings)
    chosen = {
        k for k in loaded if not k.startswith("_") and k not in ("os", "tempfile")
    }
    assert chosen <= known, chosen - known
    assert loaded["wsgi_app"] == f"oauth_tai.wsgi:{name}_app()"
    assert loaded["preload_app"] is False
    assert loaded["workers"] >= 2 and loaded["worker_class"] == "gthread"
    assert all(b.startswith("127.0.0.1:") for b in loaded["bind"])
    for hook in ("on_starting", "when_ready", "child_exit", "on_exit"):
        assert callable(loaded[hook])


def _gunicorn(name: str, var_dir: Path, log_path: Path, **extra: str) -> Process:
    port = free_port()
    env = server_env(var_dir, **extra)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [
        str(GUNICORN),
        "-c",
        str(DEPLOY / "gunicorn" / f"{name}.py"),
        "--bind",
        f"127.0.0.1:{port}",
    ]
    var_dir.mkdir(parents=True, exist_ok=True)
    return start_process(command, {**env, "PYTHONUNBUFFERED": "1"}, log_path, port)


def _booted(process: Process) -> set[str]:
    return {
        line.split("pid: ")[1].rstrip(")")
        for line in process.log().splitlines()
        if "Booting worker with pid" in line
    }


def test_gunicorn_runs_both_with_two_workers_and_adds_up_metrics(
    tmp_path: Path, processes: list[Process]
) -> None:
    var = tmp_path / "var"
    serve = _gunicorn("serve", var, tmp_path / "serve.log")
    processes.append(serve)
    gateway = _gunicorn("gateway", var, tmp_path / "gateway.log")
    processes.append(gateway)
    http = loopback_session()

    for process in (serve, gateway):
        assert http.get(process.base + "/healthz", timeout=30).status_code == 200
        assert http.get(process.base + "/readyz", timeout=30).status_code == 200

    # Each request on a new connection, so both workers take some; every
    # scrape, whichever worker answers it, counts them all.
    requests_sent = 20
    for _ in range(requests_sent):
        answer = loopback_session().get(gateway.base + "/auth", timeout=30)
        assert answer.status_code == 400

    # Each worker adds its counts to the shared files within FLUSH_SECONDS.
    time.sleep(FLUSH_SECONDS + 0.5)
    invalid = {"outcome": "refused", "reason": "invalid_request"}
    for _ in range(5):
        samples = scrape(gateway.base + "/metrics")
        assert value(samples, "oauth_tai_decisions_total", **invalid) == requests_sent

    # gunicorn boots its workers one after the other and logs each as it
    # goes: give the second its moment, within a bound.
    give_up = time.monotonic() + 15
    while len(_booted(gateway)) < 2 and time.monotonic() < give_up:
        time.sleep(0.1)
    assert len(_booted(gateway)) == 2, gateway.log()
    assert "Traceback" not in serve.log() + gateway.log()


def test_metrics_directory_is_emptied_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts of a past run must not add to a new one's."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old")
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    monkeypatch.setenv("OAUTH_TAI_VAR_DIR", str(tmp_path / "var"))

    on_starting(None)

    assert list(directory.iterdir()) == []
    # The key the workers would otherwise race to make, made once.
    assert (tmp_path / "var" / "secret_key").is_file()
