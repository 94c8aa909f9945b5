"""The operator's guide cannot drift from the code it describes."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from oauth_tai.reference import settings_markdown
from oauth_tai.settings import PREFIX, Settings
from tests.conftest import run_cli, server_env

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SETTINGS = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
# Read outside the settings: the file the settings come from, and the
# test suite's PostgreSQL.
OTHER_VARIABLES = {"OAUTH_TAI_CONFIG", "OAUTH_TAI_TEST_POSTGRES_URL"}


def _documents() -> dict[Path, str]:
    paths = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    paths += [p for p in sorted((ROOT / "deploy").rglob("*")) if p.is_file()]
    return {path: path.read_text() for path in paths}


def test_configuration_reference_is_generated_from_the_settings() -> None:
    written = (DOCS / "configuration.md").read_text()

    assert written == settings_markdown(), (
        "docs/configuration.md is stale: run "
        "`.venv/bin/oauth-tai settings --markdown > docs/configuration.md`"
    )
    for variable in SETTINGS:
        assert f"`{variable}`" in written


def test_the_command_prints_the_reference_and_hides_secrets(tmp_path: Path) -> None:
    env = server_env(
        tmp_path / "var",
        OAUTH_TAI_DATABASE_URL="postgresql://admin:hunter2-secret@db.invalid/x",
        OAUTH_TAI_SECRET_KEY="a-secret-key-" + "k" * 30,
    )
    reference = run_cli(env, "settings", "--markdown")
    shown = run_cli(env, "settings", "--json")

    assert reference.stdout == settings_markdown()
    values = json.loads(shown.stdout)
    assert values["database_url"] == "postgresql://***@db.invalid/x"
    assert "secret_key" not in values
    assert "hunter2" not in shown.stdout and "a-secret-key" not in shown.stdout


def test_every_variable_the_documents_name_exists() -> None:
    for path, text in _documents().items():
        # A name followed by "*" is a pattern (OAUTH_TAI_GATEWAY_*_HEADER).
        for variable in re.findall(r"OAUTH_TAI_[A-Z_]*[A-Z](?![A-Z_]*\*)", text):
            assert variable in SETTINGS | OTHER_VARIABLES, (path.name, variable)


def test_every_metric_the_documents_name_exists() -> None:
    # A labelled metric no label values were used with has no sample yet.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))

    # Only the prose: nginx's upstreams and variables are named alike.
    prose = {p: t for p, t in _documents().items() if p.suffix == ".md"}
    for path, text in prose.items():
        # A name followed by "(" is part of a regular expression.
        for metric in re.findall(r"oauth_tai_[a-z_]+[a-z](?![a-z_]*\()", text):
            assert metric in names, (path.name, metric)


def test_links_between_documents_resolve() -> None:
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).exists(), (path.name, target)
