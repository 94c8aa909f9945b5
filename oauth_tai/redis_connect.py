"""Opening the Redis that ``OAUTH_TAI_REDIS_URL`` names, whatever its topology.

One URL names any topology redis-py supports, and redis-py's own client
for it does the work:

``redis://[[user]:password@]host[:port][/db]``
    one server; ``rediss://`` over TLS, ``unix:///path/redis.sock?db=0``
    through a Unix socket (:meth:`redis.Redis.from_url`).
``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``
    the master that the Sentinels at those addresses (port 26379 unless
    given) name for ``service``, followed through failovers
    (:class:`redis.sentinel.Sentinel`). The user and password are the
    master's; the options ``sentinel_username`` and ``sentinel_password``
    are the Sentinels' own, when they require one.
``redis+cluster://[[user]:password@]host[:port][,host[:port]...]``
    a Redis Cluster, discovered from any of those nodes (port 6379 unless
    given) (:class:`redis.cluster.RedisCluster`). A cluster has database 0
    only.

``rediss+sentinel://`` and ``rediss+cluster://`` are the same over TLS,
to the Sentinels too. Any other ``?option=value`` is one of redis-py's own
URL options (``ssl_ca_certs``, ``ssl_cert_reqs``, ``client_name``...) and
applies to every connection to the data.

Every client has timeouts fit for the request path and does not retry a
failed call: the caller's :class:`~oauth_tai.redis_guard.RedisGuard` backs
off instead. Errors about a URL never quote it, as it may hold a password.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Connection, SSLConnection, parse_url
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from oauth_tai.errors import ConfigurationError

__all__ = [
    "REDIS_FAILURES",
    "REDIS_TIMEOUT_SECONDS",
    "SCHEMES",
    "RedisClient",
    "RedisTarget",
    "connect_redis",
    "parse_redis_url",
    "redis_connector",
]

# Redis calls sit on the request path: a slow Redis must cost little more
# than a missing one.
REDIS_TIMEOUT_SECONDS: Final = 0.25

RedisClient: TypeAlias = redis.Redis | RedisCluster

# What redis-py raises when Redis cannot serve a call. A cluster that no
# node of which answers raises RedisClusterException, which is not a
# RedisError.
REDIS_FAILURES: Final = (redis.RedisError, RedisClusterException)

SCHEMES: Final = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)

SENTINEL_PORT: Final = 26379
CLUSTER_PORT: Final = 6379

# Options for the Sentinels themselves, taken out before redis-py reads
# the rest.
_SENTINEL_OPTIONS: Final = {
    "sentinel_username": "username",
    "sentinel_password": "password",
}

_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<netloc>[^/?#]*)"
    r"(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?(?:#.*)?",
    re.DOTALL,
)
_NODE = re.compile(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?")

_REFUSED_VALUE = re.compile(r"Invalid value for '(\w+)'")

_ENCODING_HINT = (
    "; percent-encode any '/', '?', '#' or '@' in the user name or password"
)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL names, read but not connected to.

    ``topology`` is ``server``, ``sentinel`` or ``cluster``; ``nodes`` the
    Sentinels' or the cluster nodes' addresses; ``service`` the Sentinel
    service. The URL and the connection options hold the password, so no
    ``repr`` shows them.
    """

    topology: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    url: str = field(default="", repr=False)
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    sentinel_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def open(self, timeout: float = REDIS_TIMEOUT_SECONDS) -> RedisClient:
        """Return a client, with ``timeout`` seconds on every socket operation.

        A server's or a Sentinel master's client connects on its first
        call; a cluster's asks the nodes for the cluster's layout now, and
        raises one of :data:`REDIS_FAILURES` when none answers.
        """
        # URL options win over these, as they do in redis-py's from_url.
        bounded: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        if self.topology == "server":
            client: redis.Redis = redis.Redis.from_url(
                self.url, retry=_no_retry(), **bounded
            )
            return client

        if self.topology == "sentinel":
            sentinel = Sentinel(
                self.nodes,
                sentinel_kwargs={
                    **bounded,
                    "retry": _no_retry(),
                    **self.sentinel_options,
                },
                **{**bounded, "retry": _no_retry(), **self.options},
            )
            master: redis.Redis = sentinel.master_for(self.service)
            return master

        # redis-py leaves ClusterNode and parse_url without annotations.
        nodes = [ClusterNode(h, p) for h, p in self.nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(
            startup_nodes=nodes,
            retry=_no_retry(),
            **{**bounded, **self.options},
        )


def parse_redis_url(url: str, *, name: str = "the Redis URL") -> RedisTarget:
    """Read a Redis URL of any form this module names.

    Raises :class:`ConfigurationError` saying what is wrong with it, called
    ``name``, without quoting it.
    """
    try:
        return _parse(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{name} {exc}") from None


def _parse(url: str) -> RedisTarget:
    match = _URL.fullmatch(url.strip())
    scheme = match.group("scheme").lower() if match else ""
    if match is None or scheme not in SCHEMES:
        raise ConfigurationError(
            "must start with " + ", ".join(f"{s}://" for s in SCHEMES)
        )

    # The authority ends at the first "/", "?" or "#": one in a password
    # puts the rest of it, and the host, in the path or query, where an
    # "@" is left to tell. Read on, the URL would name another host, and
    # errors and logs would show the password's pieces as its parts.
    if "@" in url.strip()[match.end("netloc") :]:
        raise ConfigurationError("has an '@' after its host" + _ENCODING_HINT)

    userinfo, at, hosts = match.group("netloc").rpartition("@")
    if scheme in ("redis", "rediss", "unix"):
        if scheme != "unix":
            if address := _NODE.fullmatch(hosts):
                _check_port(address.group("port"))
            _check_db(
                match.group("path").removeprefix("/"),
                parse_qsl(match.group("query") or ""),
                "has a database that is no number: host/0",
            )
        return _server(url.strip(), scheme)

    tls = scheme.startswith("rediss")
    query = parse_qsl(match.group("query") or "")
    if scheme.endswith("+sentinel"):
        return _sentinel(tls, userinfo + at, hosts, match.group("path"), query)

    return _cluster(tls, userinfo + at, hosts, match.group("path"), query)


def connect_redis(url: str, *, timeout: float = REDIS_TIMEOUT_SECONDS) -> RedisClient:
    """Open a client for ``url`` (see :meth:`RedisTarget.open`).

    Raises :class:`ConfigurationError` for a URL it cannot read.
    """
    return parse_redis_url(url).open(timeout)


def redis_connector(
    url: str, *, timeout: float = REDIS_TIMEOUT_SECONDS
) -> Callable[[], RedisClient]:
    """Read ``url`` now; return a function that opens a client for it.

    A cluster's client cannot be made while no node answers; this lets a
    process start anyway and open it on a later call (see
    :class:`~oauth_tai.redis_guard.RedisGuard`). Raises
    :class:`ConfigurationError` for a URL it cannot read.
    """
    target = parse_redis_url(url)
    return lambda: target.open(timeout)


# -- the forms ----------------------------------------------------------------


def _server(url: str, scheme: str) -> RedisTarget:
    options = _redis_options(url)
    if scheme == "unix" and not options.get("path"):
        raise ConfigurationError("names no socket: unix:///path/redis.sock")

    connection_class = options.pop("connection_class", Connection)
    _check_options(connection_class, options)
    return RedisTarget("server", url=url)


def _check_db(db: str, query: list[tuple[str, str]], no_number: str) -> None:
    # What redis-py does not read as a number it quietly takes for
    # database 0 ("²" passes str.isdigit but not int), and a "?db=" after
    # the path quietly wins over it.
    if db and not (db.isascii() and db.isdigit()):
        raise ConfigurationError(no_number)
    if db and any(name == "db" for name, _value in query):
        raise ConfigurationError("names its database twice, in the path and ?db=")


def _sentinel(
    tls: bool, userinfo: str, hosts: str, path: str, query: list[tuple[str, str]]
) -> RedisTarget:
    service, _, db = path.removeprefix("/").partition("/")
    if not service:
        raise ConfigurationError(
            "names no Sentinel service: "
            "redis+sentinel://host:26379[,host:26379]/service[/db]"
        )
    _check_db(db, query, "has a database after the service that is no number")

    for_sentinels = {
        _SENTINEL_OPTIONS[name]: value
        for name, value in query
        if name in _SENTINEL_OPTIONS
    }
    rest = [(name, value) for name, value in query if name not in _SENTINEL_OPTIONS]
    options = _data_options(tls, userinfo, "/" + (db or "0"), rest)

    sentinel_options: dict[str, Any] = dict(for_sentinels)
    if tls:
        # The Sentinels are reached the way the data is: over TLS, with the
        # same certificates and checks.
        sentinel_options.update(
            (name, value) for name, value in options.items() if name.startswith("ssl")
        )
    if sentinel_options:
        # redis-py makes a client of each Sentinel with these.
        _check_options(redis.Redis, sentinel_options)

    return RedisTarget(
        "sentinel",
        nodes=_nodes(hosts, SENTINEL_PORT),
        service=unquote(service),
        options=options,
        sentinel_options=sentinel_options,
    )


def _cluster(
    tls: bool, userinfo: str, hosts: str, path: str, query: list[tuple[str, str]]
) -> RedisTarget:
    options = _data_options(tls, userinfo, "", query)
    if path.strip("/") not in ("", "0") or options.pop("db", 0) != 0:
        raise ConfigurationError("names a database other than 0: a cluster has one")

    return RedisTarget("cluster", nodes=_nodes(hosts, CLUSTER_PORT), options=options)


# -- reading the parts --------------------------------------------------------


def _nodes(hosts: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for each in hosts.split(","):
        match = _NODE.fullmatch(each.strip())
        if match is None:
            raise ConfigurationError(
                "needs host[:port] addresses separated by commas" + _ENCODING_HINT
            )

        port = _check_port(match.group("port")) or default_port
        nodes.append((unquote(match.group("ipv6") or match.group("host")), port))

    return tuple(nodes)


def _check_port(port: str | None) -> int | None:
    """Return the port as a number; raise if it is no TCP port."""
    if port is None:
        return None
    if not 0 < int(port) < 65536:
        raise ConfigurationError("has a port out of range: from 1 to 65535")
    return int(port)


def _data_options(
    tls: bool, userinfo: str, db_path: str, query: list[tuple[str, str]]
) -> dict[str, Any]:
    """Return the options of the connections to the data, as redis-py reads them."""
    # redis-py reads user, password, database and options from a URL of one
    # server; the address in it is a stand-in and is dropped.
    single = f"{'rediss' if tls else 'redis'}://{userinfo}localhost{db_path}"
    if query:
        single += "?" + urlencode(query)
    options = _redis_options(single)
    for name in ("host", "port", "connection_class"):
        options.pop(name, None)

    _check_options(SSLConnection if tls else Connection, options)
    if tls:
        options["ssl"] = True
    return options


def _redis_options(url: str) -> dict[str, Any]:
    try:
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        # redis-py's own message names a known option whose value it
        # refuses; others (a port that is no number) may quote the URL.
        known = _REFUSED_VALUE.match(str(exc))
        if known:
            raise ConfigurationError(
                f"has a value for {known.group(1)!r} that redis-py refuses"
            ) from None
        raise ConfigurationError("cannot be read" + _ENCODING_HINT) from None

    return options


def _check_options(make: Callable[..., object], options: Mapping[str, Any]) -> None:
    # Making a connection or client object opens nothing, and is how
    # redis-py itself would find an option it does not take, at the first
    # call otherwise.
    try:
        make(**options)
    except TypeError:
        # A TLS option on a URL without TLS: its value may be wrong too.
        if make is not Connection or not _refuses(SSLConnection, options):
            raise ConfigurationError(
                "has an option after '?' that redis-py does not take" + _ENCODING_HINT
            ) from None
        make = SSLConnection
    except (ValueError, redis.RedisError):
        pass
    else:
        return

    refused = [name for name in options if _refuses(make, {name: options[name]})]
    raise ConfigurationError(
        f"has a value for {', '.join(map(repr, refused)) or 'an option'} "
        "that redis-py refuses"
    )


def _refuses(make: Callable[..., object], options: Mapping[str, Any]) -> bool:
    """Tell whether ``make`` takes these options but refuses a value."""
    try:
        make(**options)
    except (ValueError, redis.RedisError):
        return True
    except TypeError:
        return False
    return False


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)
