"""What ``oauth-tai serve --workers`` accepts, and what it hands gunicorn."""

from __future__ import annotations

from pathlib import Path

import pytest

from oauth_tai.cli import main
from oauth_tai.errors import ConfigurationError
from oauth_tai.settings import Settings
from oauth_tai.workers import WorkerServer
from tests.conftest import run_cli, server_env


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--workers", "0"], "--workers must be 1 or more"),
        (["--workers", "2", "--threads", "0"], "--threads must be 1 or more"),
        (["--threads", "4"], "need --workers 2 or more"),
        (["--worker-class", "gthread"], "need --workers 2 or more"),
        (
            ["--workers", "2", "--worker-class", "sync", "--threads", "4"],
            "--threads needs gthread",
        ),
    ],
)
def test_serve_refuses_options_that_mean_nothing(
    tmp_path: Path, options: list[str], message: str
) -> None:
    """Refused before anything listens: the command exits 1 and says why."""
    result = run_cli(server_env(tmp_path / "var"), "serve", "--port", "9", *options)

    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    assert not (tmp_path / "var").exists(), "nothing was started or created"


def test_gunicorn_settings_from_the_environment_yield_to_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GUNICORN_CMD_ARGS adds settings, but cannot preload the app or resize."""
    monkeypatch.setenv(
        "GUNICORN_CMD_ARGS", "--preload --workers 7 --timeout 5 --access-logfile -"
    )

    server = WorkerServer(
        Settings(), "::1", 8123, workers=3, worker_class="gthread", threads=2
    )

    assert server.cfg.preload_app is False, "each worker must build its own app"
    assert server.cfg.workers == 3
    assert server.cfg.worker_class_str == "gthread"
    assert server.cfg.threads == 2
    assert server.cfg.bind == ["[::1]:8123"]
    assert server.cfg.timeout == 5
    assert server.cfg.accesslog == "-"


@pytest.mark.parametrize(
    ("workers", "worker_class", "threads"),
    [(0, "sync", 1), (2, "gevent", 1), (2, "gthread", 0), (2, "sync", 4)],
)
def test_a_worker_server_refuses_what_it_does_not_run(
    workers: int, worker_class: str, threads: int
) -> None:
    with pytest.raises(ConfigurationError):
        WorkerServer(
            Settings(),
            "127.0.0.1",
            8123,
            workers=workers,
            worker_class=worker_class,
            threads=threads,
        )


@pytest.mark.parametrize(
    ("options", "worker_class"),
    [
        ([], "sync"),
        (["--threads", "1"], "sync"),
        (["--threads", "4"], "gthread"),
        (["--worker-class", "gthread"], "gthread"),
    ],
)
def test_threads_choose_gthread_workers_out_loud(
    monkeypatch: pytest.MonkeyPatch, options: list[str], worker_class: str
) -> None:
    """More than one thread runs gthread workers, as the command says, not
    because gunicorn swaps the class behind its back."""
    asked: dict[str, object] = {}
    # The command would set up logging for the whole test process.
    monkeypatch.setattr("oauth_tai.cli.configure_logging", lambda *_a, **_k: None)
    monkeypatch.setattr(
        "oauth_tai.workers.serve_workers",
        lambda *_args, **options: asked.update(options),
    )

    assert main(["serve", "--port", "9", "--workers", "2", *options]) == 0
    assert asked["worker_class"] == worker_class
