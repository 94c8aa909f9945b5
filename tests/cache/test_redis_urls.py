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
from oauth_tai.reference import hide_password
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
        ("rediss://cache.example?ssl_cert_reqs=maybe", "'ssl_cert_reqs' that"),
        ("unix://", "names no socket"),
        (f"redis+sentinel://:{PASSWORD}@s1:26379", "names no Sentinel service"),
        (f"redis+sentinel://:{PASSWORD}@s1/cache/one", "no number"),
        (f"redis://:{PASSWORD}@cache.example/cache", "no number"),
        ("rediss://cache.example:6380/1x", "no number"),
        ("redis://cache.example/0/1", "no number"),
        ("redis://cache.example/\u00b2", "no number"),
        ("redis://cache.example/\u0663", "no number"),
        ("redis+sentinel://s1/cache/\u00b2", "no number"),
        (f"redis://:{PASSWORD}@cache.example/5?db=3", "database twice"),
        ("redis+sentinel://s1/cache/3?db=5", "database twice"),
        ("redis+sentinel://s1/cache?sentinel_colour=blue", "option after '?'"),
        (f"redis+cluster://:{PASSWORD}@n1:7000/2", "database other than 0"),
        ("redis+cluster://n1:7000?db=1", "database other than 0"),
        (f"redis+cluster://:{PASSWORD}@n1:70000", "port out of range"),
        (f"redis+cluster://:{PASSWORD}@n1,,n2", "host[:port] addresses"),
        (f"redis+cluster://:{PASSWORD}@", "host[:port] addresses"),
        ("redis://127.0.0.1:99999/0", "port out of range"),
        (f"redis://:{PASSWORD}@127.0.0.1:0/0", "port out of range"),
        (f"redis+sentinel://:{PASSWORD}@127.0.0.1:99999/m", "port out of range"),
        ("redis://127.0.0.1:6399/0?ssl_cert_reqs=bogus", "'ssl_cert_reqs' that"),
        ("rediss://127.0.0.1:6399/0?ssl_cert_reqs=bogus", "'ssl_cert_reqs' that"),
        ("redis+cluster://127.0.0.1:7000?ssl_cert_reqs=bogus", "'ssl_cert_reqs'"),
        ("redis://127.0.0.1:6399/0?ssl_cert_reqs=none", "does not take"),
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


# Passwords with an unencoded "/", "?", "#" or "@": read as they stand, they
# would name another host ("default", port 2024) and show their pieces.
UNENCODED = [
    ("2024/Spring!", "redis://default:{}@127.0.0.1:6399/0"),
    ("p@ss/w:rd#?%x", "redis+sentinel://:{}@127.0.0.1:26399/authmaster"),
    ("why?not@all", "rediss+cluster://:{}@127.0.0.1:7000"),
    ("hash#tag", "unix://:{}@/run/redis.sock"),
    ("sent@nel", "redis+sentinel://127.0.0.1:26399/m?sentinel_password={}"),
]


@pytest.mark.parametrize(("password", "form"), UNENCODED)
def test_an_at_after_the_host_is_refused_without_the_password(
    password: str, form: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings(redis_url=form.format(password)).check()

    message = str(refused.value)
    assert message == (
        "OAUTH_TAI_REDIS_URL has an '@' after its host; percent-encode any "
        "'/', '?', '#' or '@' in the user name or password"
    )


@pytest.mark.parametrize(("password", "form"), UNENCODED[:2])
def test_the_command_refuses_an_unencoded_password_and_shows_none_of_it(
    tmp_path: Path, password: str, form: str
) -> None:
    env = server_env(tmp_path / "var", OAUTH_TAI_REDIS_URL=form.format(password))

    refused = run_cli(env, "settings", "--json")

    assert refused.returncode == 1
    assert refused.stderr.startswith("oauth-tai: error: OAUTH_TAI_REDIS_URL has an")
    assert refused.stderr.count("\n") == 1
    assert password not in refused.stderr + refused.stdout
    assert "ss/w" not in refused.stderr + refused.stdout
    assert "Spring" not in refused.stderr + refused.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "redis://default:2024/Spring!@127.0.0.1:6399/0",
            "redis://***@127.0.0.1:6399/0",
        ),
        (
            "redis+sentinel://:p@ss/w:rd#?%x@127.0.0.1:26399/authmaster",
            "redis+sentinel://***@127.0.0.1:26399/authmaster",
        ),
        (
            f"postgresql://admin:{PASSWORD}@127.0.0.1/x?sslmode=require",
            "postgresql://***@127.0.0.1/x?sslmode=require",
        ),
        (
            f"redis://127.0.0.1:6399/0?sentinel_password={PASSWORD}&db=1",
            "redis://127.0.0.1:6399/0?sentinel_password=***&db=1",
        ),
        ("redis://127.0.0.1:6399/0", "redis://127.0.0.1:6399/0"),
    ],
)
def test_the_display_hides_all_before_the_last_at(url: str, shown: str) -> None:
    assert hide_password(url) == shown


def test_the_settings_command_hides_a_database_password_with_a_slash(
    tmp_path: Path,
) -> None:
    """The database URL is not read at start: the display alone must hide it."""
    env = server_env(
        tmp_path / "var",
        OAUTH_TAI_DATABASE_URL="postgresql://admin:2024/Spring!@127.0.0.1:1/x",
    )

    shown = run_cli(env, "settings", "--json")

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["database_url"] == "postgresql://***@127.0.0.1:1/x"
    assert "Spring" not in shown.stdout and "2024" not in shown.stdout


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
        "redis+sentinel://***@s1.invalid:26379,s2.invalid:26379"
        "/cache/0?sentinel_password=***"
    )
    assert PASSWORD not in shown.stdout
