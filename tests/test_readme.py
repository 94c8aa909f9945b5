"""The README's walkthrough runs exactly as written against a real server."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

from oauth_tai.settings import Settings
from tests.conftest import (
    database_env,
    run_cli,
    server_env,
    start_server,
    stop_server,
)

README = Path(__file__).resolve().parent.parent / "README.md"


def _walkthrough() -> str:
    text = README.read_text()
    section = text.split("<!-- walkthrough:start -->")[1]
    section = section.split("<!-- walkthrough:end -->")[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) >= 7, "the walkthrough lost its steps"
    return "\n".join(blocks)


def _sample_export_keys() -> list[str]:
    sample = re.search(r"```text\n(export .*?)\n```", README.read_text())
    assert sample is not None
    return [pair.split("=")[0] for pair in sample.group(1).split()[1:]]


def test_walkthrough_runs_as_written(tmp_path: Path, database_url: str) -> None:
    """Every bash block of the walkthrough, in order, with the demo's line."""
    server = start_server(tmp_path / "var", **database_env(database_url))
    try:
        demo = run_cli(server.env, "demo", "--base-url", server.base, "--json")
        assert demo.returncode == 0, demo.stderr
        values = json.loads(demo.stdout)
        assert values["created"] is True
        del values["created"]
        assert list(values) == _sample_export_keys()

        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _walkthrough()],
            cwd=tmp_path,
            env={**server.env, **values},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop_server(server)

    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert "<h1>Authorize Demo App?</h1>" in out
    assert "http://127.0.0.1:9000/callback?code=" in out
    assert "state=walkthrough" in out
    assert '"generator": {"id": "demo-app", "displayName": "Demo App"}' in out
    assert out.rstrip().endswith("HTTP/1.1 401 Unauthorized")


def test_demo_is_created_once(tmp_path: Path, database_url: str) -> None:
    """A second `oauth-tai demo` creates nothing and shows no credentials."""
    env = server_env(tmp_path / "var", **database_env(database_url))
    first = run_cli(env, "demo")
    second = run_cli(env, "demo")

    assert first.returncode == 0 and second.returncode == 0
    assert "CLIENT_SECRET=" in first.stdout
    assert "CLIENT_SECRET" not in second.stdout
    assert "set up already" in second.stdout


def test_every_setting_is_documented() -> None:
    """The settings table names every field of Settings, and nothing else."""
    text = README.read_text()
    documented = set(re.findall(r"^\| `(OAUTH_TAI_[A-Z_]+)` \|", text, re.MULTILINE))
    fields = {"OAUTH_TAI_" + f.name.upper() for f in dataclasses.fields(Settings)}
    assert documented == fields
