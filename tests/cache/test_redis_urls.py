"""``OAUTH_TAI_REDIS_URL``: every form it takes, and one line for one it cannot.

A refused URL stops the process at start with one line saying what is
wrong, never a traceback, and never the URL's password.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oauth_tai.errors import ConfigurationError
from oauth_tai.redis_connect import parse_redis_url
from oauth_tai.settings import Settings
from tests.conftest import run_cli, server_env

PASSWORD = "hunter2-in-the-url"


@pytest.mark.parametrize(
    ("url", "topology", "nodes", "service"),
    [
        ("redis://127.0.0.1:6379/0", "server", (), ""),
        (f"rediss://:{PASSWORD}@cache.example:6380/1", "server", (), ""),
        ("unix:///run/redis/redis.sock?db=2", "server", (), ""),
        (
            f"redis+sentinel://:{PASSWORD}@s1.example,s2.example:26380/cache",
            "sentinel",
            (("s1.example", 26379), ("s2.example", 26380)),
            "cache",
        ),
        (
            "rediss+sentinel://oauth@[::1]:26379/cache/3?sentinel_password=x",
            "sentinel",
            (("::1", 26379),),
            "cache",
        ),
        (
            "redis+cluster://n1.example:7000,n2.example,[2001:db8::1]:7002",
            "cluster",
            (("n1.example", 7000), ("n2.example", 6379), ("2001:db8::1", 7002)),
            "",
        ),
        ("rediss+cluster://n1.example:7000/0?ssl_cert_reqs=none", "cluster", None, ""),
    ],
)
def test_every_form_is_read(
    url: str,
    topology: str,
    nodes: tuple[tuple[str, int], ...] | None,
    service: str,
) -> None:
    Settings(redis_url=url).check()
    target = parse_redis_url(url)

    assert target.topology == topology
    assert nodes is None or target.nodes == nodes
    assert target.service == service
    assert PASSWORD not in repr(target)


def test_the_master_and_the_sentinels_each_have_their_password() -> None:
    target = parse_redis_url(
        f"rediss+sentinel://oauth:{PASSWORD}@s1:26379/cache/2"
        "?sentinel_password=sentinel-pw&ssl_ca_certs=/etc/ca.pem"
    )

    assert target.options["username"] == "oauth"
    assert target.options["password"] == PASSWORD
    assert target.options["db"] == 2
    assert target.options["ssl"] is True
    assert target.sentinel_options == {
        "password": "sentinel-pw",
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl": True,
    }


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://cache.example", "must start with redis://"),
        ("cache.example:6379", "must start with redis://"),
        (f"redis://:{PASSWORD}@cache.example:port", "cannot be read"),
        (f"redis://:{PASSWORD[:4]}/{PASSWORD[4:]}@h", "percent-encode"),
        ("redis://cache.example?sokcet_timeout=1", "option after '?'"),
        ("redis://cache.example?socket_timeout=soon", "'socket_timeout'"),
        ("rediss://cache.example?ssl_cert_reqs=maybe", "value redis-py refuses"),
        ("unix://", "names no socket"),
        (f"redis+sentinel://:{PASSWORD}@s1:26379", "names no Sentinel service"),
        (f"redis+sentinel://:{PASSWORD}@s1/cache/one", "no number"),
        ("redis+sentinel://s1/cache?sentinel_colour=blue", "option after '?'"),
        (f"redis+cluster://:{PASSWORD}@n1:7000/2", "database other than 0"),
        ("redis+cluster://n1:7000?db=1", "database other than 0"),
        (f"redis+cluster://:{PASSWORD}@n1:70000", "port from 1 to 65535"),
        (f"redis+cluster://:{PASSWORD}@n1,,n2", "host[:port] addresses"),
        (f"redis+cluster://:{PASSWORD}@", "host[:port] addresses"),
    ],
)
def test_a_url_that_cannot_be_used_is_one_line_without_its_password(
    url: str, says: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings(redis_url=url).check()

    message = str(refused.value)
    assert message.startswith("OAUTH_TAI_REDIS_URL ")
    assert says in message
    assert "\n" not in message
    assert PASSWORD not in message and PASSWORD[:4] not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_the_command_refuses_a_bad_url_in_one_line(tmp_path: Path) -> None:
    env = server_env(
        tmp_path / "var",
        OAUTH_TAI_REDIS_URL=f"redis+sentinel://:{PASSWORD}@s1.invalid:26379",
    )

    refused = run_cli(env, "clients", "list")

    assert refused.returncode == 1
    assert refused.stderr.startswith("oauth-tai: error: OAUTH_TAI_REDIS_URL ")
    assert refused.stderr.count("\n") == 1
    assert PASSWORD not in refused.stderr + refused.stdout


def test_the_settings_command_hides_both_sentinel_passwords(tmp_path: Path) -> None:
    env = server_env(
        tmp_path / "var",
        OAUTH_TAI_REDIS_URL=(
            f"redis+sentinel://:{PASSWORD}@s1.invalid:26379,s2.invalid:26379"
            f"/cache/0?sentinel_password={PASSWORD}-too"
        ),
    )

    shown = run_cli(env, "settings", "--json")

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["redis_url"] == (
        "redis+sentinel://:***@s1.invalid:26379,s2.invalid:26379"
        "/cache/0?sentinel_password=***"
    )
    assert PASSWORD not in shown.stdout
