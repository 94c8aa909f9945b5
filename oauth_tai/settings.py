"""Every setting, its environment variable, type and default.

Settings come from ``OAUTH_TAI_*`` environment variables, or from a TOML
file named by ``OAUTH_TAI_CONFIG`` whose keys are the field names below;
an environment variable wins over the file. Each field's ``doc`` metadata is
the one place its meaning is written down.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oauth_tai.errors import ConfigurationError
from oauth_tai.redis_connect import parse_redis_url

PREFIX = "OAUTH_TAI_"


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, slots=True)
class Settings:
    """The configuration of one oauth-tai process."""

    var_dir: str = field(
        default="var", metadata=_doc("Directory for the SQLite file and keys.")
    )
    database_url: str = field(
        default="",
        metadata=_doc("SQLite or PostgreSQL URL; empty: a SQLite file under var_dir."),
    )
    redis_url: str = field(
        default="",
        metadata=_doc(
            "Redis for the shared cache; empty: none. One server "
            "(`redis://host:6379/0`, `rediss://` over TLS, "
            "`unix:///path/redis.sock`), a master found by Sentinel "
            "(`redis+sentinel://host:26379[,host:26379]/service[/db]`) or a "
            "cluster (`redis+cluster://host:6379[,host:6379]`); `rediss+sentinel://` "
            "and `rediss+cluster://` over TLS. See docs/scaling.md."
        ),
    )
    redis_prefix: str = field(
        default="oauth-tai:", metadata=_doc("Prefix of every Redis key written.")
    )
    secret_key: str = field(
        default="",
        metadata=_doc(
            "Key of the cache's token hashes and Redis signatures, the same in "
            "every process; empty: generated under var_dir."
        ),
    )
    log_level: str = field(
        default="INFO",
        metadata=_doc("DEBUG, INFO, WARNING or ERROR; the audit trail stays at INFO."),
    )
    log_format: str = field(default="text", metadata=_doc("`text` or `json`."))
    context_root: str = field(
        default="/oauth2", metadata=_doc("URL prefix of the provider.")
    )
    provider_name: str = field(
        default="connectionsProvider", metadata=_doc("Provider name in its URLs.")
    )
    public_url: str = field(
        default="",
        metadata=_doc("Base URL the provider is reached at; empty: from requests."),
    )
    realm: str = field(
        default="oauth-tai", metadata=_doc("Realm in WWW-Authenticate challenges.")
    )
    code_lifetime: int = field(
        default=60, metadata=_doc("Seconds an authorization code is valid.")
    )
    access_token_lifetime: int = field(
        default=43_200, metadata=_doc("Seconds an access token is valid.")
    )
    grant_lifetime: int = field(
        default=15_768_000, metadata=_doc("Seconds a user's consent lasts.")
    )
    cache_ttl: int = field(
        default=300,
        metadata=_doc("Longest, in seconds, a provider's answer is cached."),
    )
    negative_cache_ttl: int = field(
        default=5, metadata=_doc("Seconds an inactive answer is cached.")
    )
    cache_size: int = field(
        default=100_000, metadata=_doc("Entries held in the in-process cache.")
    )
    report_only: bool = field(
        default=False,
        metadata=_doc("Log the middleware's refusals but let requests through."),
    )
    max_stale: int = field(
        default=0,
        metadata=_doc(
            "Seconds past its cache TTL a token stays valid while the provider "
            "is down; never past its expiry. 0: off."
        ),
    )
    breaker_failures: int = field(
        default=5,
        metadata=_doc("Provider failures in a row that open the breaker; 0: never."),
    )
    breaker_cooldown: float = field(
        default=5.0,
        metadata=_doc("Seconds the breaker stays open before one probe."),
    )
    introspection_url: str = field(
        default="",
        metadata=_doc("RFC 7662 endpoint to trust; empty: the local token store."),
    )
    introspection_client_id: str = field(
        default="", metadata=_doc("Client id for the introspection endpoint.")
    )
    introspection_client_secret: str = field(
        default="", metadata=_doc("Client secret for the introspection endpoint.")
    )
    introspection_timeout: float = field(
        default=2.0, metadata=_doc("Connect and read timeout, in seconds.")
    )
    introspection_auth_method: str = field(
        default="client_secret_basic",
        metadata=_doc("client_secret_basic, client_secret_post or private_key_jwt."),
    )
    introspection_private_key_file: str = field(
        default="",
        metadata=_doc("PEM private key for private_key_jwt."),
    )
    introspection_key_id: str = field(
        default="", metadata=_doc("The kid of that key at the provider, if any.")
    )
    jwks_url: str = field(
        default="",
        metadata=_doc("JWKS of a provider whose JWT access tokens to trust."),
    )
    issuer: str = field(
        default="", metadata=_doc("The `iss` those JWT access tokens must carry.")
    )
    audience: str = field(
        default="", metadata=_doc("The `aud` those JWT access tokens must hold.")
    )
    jwt_leeway: int = field(
        default=30, metadata=_doc("Seconds of clock skew allowed on JWT times.")
    )
    trust_remote_user: bool = field(
        default=False,
        metadata=_doc("Take the user from REMOTE_USER set by the server's login."),
    )
    trusted_user_header: str = field(
        default="",
        metadata=_doc("Header naming the user, set by a trusted proxy; empty: off."),
    )
    template_dir: str = field(
        default="",
        metadata=_doc("Folder of page templates that override the built-in ones."),
    )
    gateway_user_header: str = field(
        default="X-Auth-User",
        metadata=_doc("Header the gateway names the user in; absent for none."),
    )
    gateway_consumer_header: str = field(
        default="X-Auth-Consumer",
        metadata=_doc("Header the gateway names the consumer's id in."),
    )
    gateway_consumer_name_header: str = field(
        default="X-Auth-Consumer-Name",
        metadata=_doc("Header the gateway names the consumer's name in."),
    )
    gateway_scope_header: str = field(
        default="X-Auth-Scope",
        metadata=_doc("Header the gateway lists the token's scopes in."),
    )
    gateway_hide_token: bool = field(
        default=False,
        metadata=_doc("Drop a bearer Authorization header before the upstream."),
    )
    metrics_enabled: bool = field(
        default=True,
        metadata=_doc("Serve Prometheus metrics at /metrics; false: nowhere."),
    )
    metrics_port: int = field(
        default=0,
        metadata=_doc("Port of a separate metrics listener; 0: the main port."),
    )
    metrics_host: str = field(
        default="127.0.0.1",
        metadata=_doc("Address the separate metrics listener binds to."),
    )

    def __repr__(self) -> str:
        # A settings object ends up in tracebacks and debug output: keep the
        # two secrets it can hold out of them.
        shown = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if "secret" not in f.name
        }
        return f"Settings({shown!r})"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from the environment and the optional TOML file.

        Raises :class:`ConfigurationError` for an unreadable file, an
        unknown key or a value of the wrong type.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = environ.get(PREFIX + "CONFIG")
        if config_path:
            values.update(_read_toml(config_path))

        for f in dataclasses.fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = raw

        settings = cls(**{k: _coerce(cls, k, v) for k, v in values.items()})
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`ConfigurationError` for a value no process can use."""
        if self.log_level.upper() not in _LEVELS:
            raise ConfigurationError(
                f"{PREFIX}LOG_LEVEL must be one of {', '.join(_LEVELS)}"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigurationError(f"{PREFIX}LOG_FORMAT must be text or json")
        if self.redis_url:
            # Its message never quotes the URL, which may hold a password.
            parse_redis_url(self.redis_url, name=f"{PREFIX}REDIS_URL")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{PREFIX}{name.upper()} must be positive")

    def with_values(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def var_path(self) -> Path:
        return Path(self.var_dir).resolve()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url

        return f"sqlite:///{self.var_path / 'oauth-tai.db'}"

    def effective_secret_key(self) -> bytes:
        """Return the secret key, generating and keeping one if none is set."""
        if self.secret_key:
            return self.secret_key.encode()

        path = self.var_path / "secret_key"
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass

        self.var_path.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)

        return key


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc

    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigurationError(f"{path}: unknown settings {', '.join(unknown)}")

    return data


def _coerce(cls: type[Settings], name: str, value: Any) -> Any:
    kind = {f.name: f.default for f in dataclasses.fields(cls)}
    if name not in kind:
        raise ConfigurationError(f"unknown setting {name!r}")

    target: type[Any] = type(kind[name])
    variable = PREFIX + name.upper()
    if target is bool:
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in _TRUE:
            return True
        if str(value).strip().lower() in _FALSE:
            return False
        raise ConfigurationError(f"{variable} must be true or false, not {value!r}")

    if isinstance(value, target) and not isinstance(value, bool):
        return value

    try:
        return target(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{variable} must be a {target.__name__}, not {value!r}"
        ) from exc


_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_POSITIVE = (
    "code_lifetime",
    "access_token_lifetime",
    "grant_lifetime",
    "cache_ttl",
    "negative_cache_ttl",
    "cache_size",
    "introspection_timeout",
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
