"""Two gunicorn workers, one token: a revocation reaches both within a second.

``oauth-tai serve --workers 2`` runs as its own process tree on a loopback
port, with the test's Redis as the shared tier under a prefix of its own.
The product says nothing about which worker answered a request; gunicorn's
access log does, when asked through gunicorn's own ``GUNICORN_CMD_ARGS``
to print the worker's pid with each request. Sync workers close every
connection after one request, so each request is a fresh draw of the
worker that accepts it.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from sqlalchemy import update

from oauth_tai.database import tokens
from oauth_tai.provider.hashing import token_hash
from oauth_tai.provider.store.base import ACCESS
from oauth_tai.system import open_provider
from tests.conftest import (
    LiveServer,
    database_env,
    start_server,
    stop_server,
)
from tests.oauth_client import (
    PROFILE,
    REDIRECT_URI,
    REVOKE,
    add_user,
    authorization_url,
    authorize_as_user,
    loopback_session,
    make_pkce,
    post_token,
    register_consumer,
)

# The revocation follower reads the feed every second; the margin absorbs
# a poll that starts just before the revocation commits and a busy CI
# machine's scheduling. It bounds the wait, it measures nothing.
DEADLINE_SECONDS = 1.0
MARGIN_SECONDS = 0.5

# Each request is an independent draw of one of two workers: after this
# many, missing one of them has a chance of about 2**-100.
MAX_REQUESTS = 100

# Calls sent at once while warming the workers.
BATCH = 4

# Requests in a row that must all be refused after the deadline.
REFUSALS_IN_A_ROW = 40

ACCESS_LOG = re.compile(r"^<(\d+)> (\d{3}) (\S+)$", re.MULTILINE)


@pytest.fixture
def workers_server(
    tmp_path: Path, database_url: str, redis_url: str, redis_prefix: str
) -> Iterator[LiveServer]:
    """``oauth-tai serve --workers 2`` with Redis and a pid in its access log."""
    server = start_server(
        tmp_path / "var",
        "--workers",
        "2",
        OAUTH_TAI_REDIS_URL=redis_url,
        OAUTH_TAI_REDIS_PREFIX=redis_prefix,
        GUNICORN_CMD_ARGS="--access-logfile - --access-logformat '%(p)s %(s)s %(U)s'",
        **database_env(database_url),
    )
    # The master listens before its workers are forked.
    give_up = time.monotonic() + 20
    while len(worker_pids(server)) < 2 and time.monotonic() < give_up:
        time.sleep(0.05)

    yield server
    workers = worker_pids(server)
    stop_server(server)
    left = {pid for pid in workers if Path(f"/proc/{pid}").exists()}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived the server"


def worker_pids(server: LiveServer) -> set[int]:
    """The pids of the server's worker processes: its children, from ``/proc``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue  # gone since the listing

        # The command name in parentheses may hold spaces: split after it.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == server.process.pid:
            found.add(int(entry.name))
    return found


def answered(server: LiveServer, since: int, status: int) -> set[int]:
    """Pids of the workers that answered the profile with ``status`` since ``since``."""
    log = server.log()[since:]
    return {
        int(pid)
        for pid, code, path in ACCESS_LOG.findall(log)
        if path == PROFILE and int(code) == status
    }


def call_profile(server: LiveServer, token: str) -> int:
    # A new session each time: no connection is reused, so the kernel picks
    # the worker afresh.
    with loopback_session() as http:
        response = http.get(
            server.base + PROFILE,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    return response.status_code


def call_until_both_answered(
    server: LiveServer, token: str, status: int, since: int
) -> list[int]:
    """Call the profile until both workers logged ``status``; return every status.

    Bounded by :data:`MAX_REQUESTS`, and then by a short wait for the log,
    which gunicorn writes just after the response.
    """
    seen: list[int] = []
    workers = worker_pids(server)
    # Calls go out in concurrent batches: a sync worker busy with one call
    # leaves the next connection to the other, where calls in a row may
    # all land on the same worker.
    with ThreadPoolExecutor(BATCH) as pool:
        for _ in range(MAX_REQUESTS // BATCH):
            seen.extend(pool.map(lambda _: call_profile(server, token), range(BATCH)))
            if answered(server, since, status) >= workers:
                return seen

    give_up = time.monotonic() + 2
    while answered(server, since, status) < workers and time.monotonic() < give_up:
        time.sleep(0.05)
    return seen


def hide_token(server: LiveServer, token: str, kind: str) -> None:
    """Set the kind of the token's row: anything but ``access`` hides it.

    Introspection finds only rows of kind ``access``, so while the row is
    hidden the provider answers that the token is not active; nothing is
    written to the revocation feed.
    """
    provider = open_provider(server.settings())
    try:
        with provider.engine.begin() as conn:
            conn.execute(
                update(tokens)
                .where(tokens.c.token_hash == token_hash(token))
                .values(kind=kind)
            )
    finally:
        provider.engine.dispose()


def empty_shared_tier(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def get_access_token(server: LiveServer) -> tuple[str, tuple[str, str]]:
    """Get an access token through the real pages and token endpoint.

    The consumer and the user are registered with the CLI first. Returns
    the token and the consumer's id and secret.
    """
    consumer = register_consumer(server, "coherent-app", "Coherent App", REDIRECT_URI)
    add_user(server, "carol")
    verifier, challenge = make_pkce()
    browser = loopback_session()
    redirect = authorize_as_user(
        browser, authorization_url(server.base, consumer, challenge=challenge), "carol"
    )
    answer = post_token(
        loopback_session(),
        server.base,
        consumer,
        {
            "grant_type": "authorization_code",
            "code": redirect["code"],
            "redirect_uri": consumer.redirect_uri,
            "code_verifier": verifier,
        },
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"], (consumer.client_id, consumer.client_secret)


def test_a_revoked_token_is_refused_by_every_worker_within_a_second(
    workers_server: LiveServer, redis_url: str, redis_prefix: str
) -> None:
    """Both workers hold the token in L1; after a revocation neither accepts it.

    How the test knows both held it in L1, and not in Redis or through the
    provider: once each worker has served the token, the test hides the
    token's row from introspection and empties the Redis tier. From then
    on a 200 can only come from a worker's own L1, and the access log
    names the worker. Then the row is restored, so that the revocation
    finds a live token, and the consumer revokes it at the provider's
    RFC 7009 endpoint, which one of the two workers handles; the other
    learns of it only through the revocation channel. Before the deadline
    the test only watches; after it, every answer must be 401, and both
    workers must have given one.
    """
    server = workers_server
    workers = worker_pids(server)
    assert len(workers) == 2, f"expected two workers, found {workers}"
    token, credentials = get_access_token(server)

    # Both workers serve the token; each has then cached it.
    since = len(server.log())
    warm = call_until_both_answered(server, token, 200, since)
    assert set(warm) == {200}, warm
    assert answered(server, since, 200) == workers, server.log()

    # Neither Redis nor the provider can say yes now: only an L1 can.
    hide_token(server, token, "hidden")
    empty_shared_tier(redis_url, redis_prefix)
    since = len(server.log())
    from_l1 = call_until_both_answered(server, token, 200, since)
    assert set(from_l1) == {200}, f"a worker had to ask again: {from_l1}"
    assert answered(server, since, 200) == workers, server.log()
    hide_token(server, token, ACCESS)

    # One worker handles the revocation; the deadline counts from before
    # the request, so the time it takes counts against the product.
    started = time.monotonic()
    revoked = loopback_session().post(
        server.base + REVOKE,
        data={"token": token, "token_type_hint": "access_token"},
        auth=credentials,
        timeout=30,
    )
    assert revoked.status_code == 200, revoked.text
    deadline = started + DEADLINE_SECONDS + MARGIN_SECONDS
    while time.monotonic() < deadline:
        assert call_profile(server, token) in (200, 401)

    since = len(server.log())
    after = [call_profile(server, token) for _ in range(REFUSALS_IN_A_ROW)]
    after += call_until_both_answered(server, token, 401, since)
    assert set(after) == {401}, f"accepted after the deadline: {after}"
    assert answered(server, since, 200) == set(), server.log()
    assert answered(server, since, 401) == workers, server.log()
    assert "Traceback" not in server.log()
