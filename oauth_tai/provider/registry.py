"""The registry of consumers (OAuth clients) an administrator has added."""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import DBAPIError, IntegrityError

from oauth_tai.audit import BY_ADMINISTRATOR, audit
from oauth_tai.database import consumers
from oauth_tai.errors import AlreadyExists, InvalidValue, NotFound
from oauth_tai.provider.hashing import (
    burn_client_secret_check,
    hash_client_secret,
    new_secret,
    upgraded_client_hash,
    verify_client_secret,
)

logger = logging.getLogger(__name__)

_URI_CHARACTERS = re.compile(r"[!#-;=?-\[\]_a-z~]+")
_HOST_NAME = re.compile(r"[a-z0-9.\-]+|[0-9a-f:.]+")
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


@dataclass(frozen=True, slots=True)
class Consumer:
    """A registered third-party application."""

    client_id: str
    name: str
    redirect_uri: str
    enabled: bool
    auto_authorize: bool
    created_at: int


class ClientRegistry:
    """Add, find, change and remove consumers.

    :param engine: the database.
    :param on_revoke_all: called with a consumer id when it is deleted or
        disabled, to end every grant and token it holds.
    """

    def __init__(
        self, engine: Engine, on_revoke_all: Callable[[str], object] | None = None
    ) -> None:
        self.engine = engine
        self.on_revoke_all = on_revoke_all

    def add(
        self,
        client_id: str,
        name: str,
        redirect_uri: str,
        *,
        auto_authorize: bool = False,
    ) -> tuple[Consumer, str]:
        """Register a consumer; return it and its secret, shown only now.

        Raises :class:`InvalidValue` for a bad id, name or redirect URI and
        :class:`AlreadyExists` for a taken id.
        """
        _check_client_id(client_id)
        _check_name(name)
        check_redirect_uri(redirect_uri)
        secret = new_secret()
        row = {
            "client_id": client_id,
            "name": name,
            "secret_hash": hash_client_secret(secret),
            "redirect_uri": redirect_uri,
            "enabled": True,
            "auto_authorize": auto_authorize,
            "created_at": int(time.time()),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(consumers).values(**row))
        except IntegrityError as exc:
            raise AlreadyExists("consumer", client_id) from exc

        audit(
            "consumer_registered",
            by=BY_ADMINISTRATOR,
            consumer=client_id,
            auto_authorize=auto_authorize,
        )
        return self.get(client_id), secret

    def get(self, client_id: str) -> Consumer:
        """Return the consumer; raise :class:`NotFound` if there is none."""
        consumer = self.find(client_id)
        if consumer is None:
            raise NotFound("consumer", client_id)

        return consumer

    def find(self, client_id: str) -> Consumer | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(consumers).where(consumers.c.client_id == client_id)
            ).first()

        return None if row is None else _consumer(row._mapping)

    def list(self, offset: int = 0, limit: int | None = None) -> list[Consumer]:
        query = select(consumers).order_by(consumers.c.client_id).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_consumer(row._mapping) for row in conn.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(consumers)).scalar_one()
            )

    def edit(
        self,
        client_id: str,
        *,
        name: str | None = None,
        redirect_uri: str | None = None,
        enabled: bool | None = None,
        auto_authorize: bool | None = None,
    ) -> Consumer:
        """Change a consumer; raise :class:`NotFound` if it is unknown.

        Disabling a consumer ends every grant and token it holds; enabling
        it again restores none of them.
        """
        changes: dict[str, object] = {}
        if enabled is not None:
            changes["enabled"] = enabled
        if auto_authorize is not None:
            changes["auto_authorize"] = auto_authorize
        if name is not None:
            _check_name(name)
            changes["name"] = name
        if redirect_uri is not None:
            check_redirect_uri(redirect_uri)
            changes["redirect_uri"] = redirect_uri

        if changes:
            self._update(client_id, changes)

        if enabled is False and self.on_revoke_all is not None:
            self.on_revoke_all(client_id)

        _audit_edit(client_id, changes)
        return self.get(client_id)

    def reset_secret(self, client_id: str) -> str:
        """Give the consumer a new secret; return it, shown only now."""
        secret = new_secret()
        self._update(client_id, {"secret_hash": hash_client_secret(secret)})
        audit("consumer_secret_reset", by=BY_ADMINISTRATOR, consumer=client_id)
        return secret

    def delete(self, client_id: str) -> None:
        """Remove the consumer with its grants and tokens."""
        self.get(client_id)
        if self.on_revoke_all is not None:
            self.on_revoke_all(client_id)

        with self.engine.begin() as conn:
            result = conn.execute(
                sql_delete(consumers).where(consumers.c.client_id == client_id)
            )
        if result.rowcount == 0:
            raise NotFound("consumer", client_id)

        audit("consumer_deleted", by=BY_ADMINISTRATOR, consumer=client_id)

    def authenticate(self, client_id: str, secret: str) -> Consumer | None:
        """Return the enabled consumer whose id and secret match, else ``None``.

        An unknown id costs the same one SHA-256 as a known one. A consumer
        whose hash an earlier version wrote with scrypt costs scrypt until
        its secret first matches, when the fast hash replaces it.
        """
        with self.engine.connect() as conn:
            row = conn.execute(
                select(consumers).where(consumers.c.client_id == client_id)
            ).first()

        if row is None:
            burn_client_secret_check(secret)
            return None

        if not verify_client_secret(secret, row.secret_hash) or not row.enabled:
            return None

        upgraded = upgraded_client_hash(secret, row.secret_hash)
        if upgraded is not None:
            self._upgrade_hash(client_id, row.secret_hash, upgraded)

        return _consumer(row._mapping)

    def _upgrade_hash(self, client_id: str, old: str, new: str) -> None:
        """Replace a legacy scrypt hash by the fast one, once the secret matched.

        Only if the row still holds the hash that was checked: a secret
        reset in between must not be overwritten by the old secret's hash.
        A failed write is no reason to refuse a consumer whose secret
        matched; the next authentication tries again.
        """
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(consumers)
                    .where(consumers.c.client_id == client_id)
                    .where(consumers.c.secret_hash == old)
                    .values(secret_hash=new)
                )
        except DBAPIError as exc:
            # Not logger.exception: the statement's text would put both
            # hashes in the log.
            logger.warning(
                "cannot store the fast hash of %s's secret, trying again at "
                "its next authentication: %s",
                client_id,
                exc.orig,
            )
            return

        if result.rowcount == 1:
            logger.info("stored the secret of %s with the fast hash", client_id)

    def _update(self, client_id: str, changes: dict[str, object]) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(consumers)
                .where(consumers.c.client_id == client_id)
                .values(**changes)
            )
        if result.rowcount == 0:
            raise NotFound("consumer", client_id)


def _audit_edit(client_id: str, changes: dict[str, object]) -> None:
    enabled = changes.get("enabled")
    if enabled is not None:
        event = "consumer_enabled" if enabled else "consumer_disabled"
        audit(event, by=BY_ADMINISTRATOR, consumer=client_id)

    changed = sorted(name for name in changes if name != "enabled")
    if changed:
        audit(
            "consumer_edited",
            by=BY_ADMINISTRATOR,
            consumer=client_id,
            changed=",".join(changed),
        )


def check_redirect_uri(uri: str) -> None:
    """Refuse a redirect URI that is not absolute https (or http on loopback).

    RFC 6749 §3.1.2 requires an absolute URI without a fragment; plain http
    is allowed only where the traffic cannot leave the machine.
    """
    # RFC 3986 §2: a URI is printable ASCII without spaces, quotes or <>.
    if not _URI_CHARACTERS.fullmatch(uri):
        raise InvalidValue("a redirect URI has only printable ASCII, no spaces")

    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise InvalidValue(f"redirect URI {uri!r} is not a valid URL") from exc

    if parts.username is not None or parts.password is not None:
        raise InvalidValue("a redirect URI must not carry a user name or password")
    if host is not None and not _HOST_NAME.fullmatch(host):
        raise InvalidValue(f"redirect URI {uri!r} has an invalid host")
    if parts.fragment or "#" in uri:
        raise InvalidValue("a redirect URI must not have a fragment")
    if not host:
        raise InvalidValue(f"redirect URI {uri!r} must be absolute")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(host):
        return

    raise InvalidValue("a redirect URI must use https, or http on loopback")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _check_client_id(client_id: str) -> None:
    if not _CLIENT_ID.fullmatch(client_id):
        raise InvalidValue(
            "a client id is 1 to 128 letters, digits, '.', '_', '~' or '-'"
        )


# Control and format characters, lone surrogates, line and paragraph
# separators: a name is printed in the columns of `clients list` and shown
# on consent pages, where a tab or a line break could pose as another
# column or row, and a direction override or an invisible character could
# make one name read as another.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _check_name(name: str) -> None:
    if (
        not name.strip()
        or len(name) > 256
        or any(unicodedata.category(ch) in _UNPRINTABLE for ch in name)
    ):
        raise InvalidValue(
            "a consumer name is 1 to 256 characters, none of them a control, "
            "format or line-separator character"
        )


def _consumer(row: object) -> Consumer:
    data = dict(row)  # type: ignore[call-overload]
    return Consumer(
        client_id=data["client_id"],
        name=data["name"],
        redirect_uri=data["redirect_uri"],
        enabled=bool(data["enabled"]),
        auto_authorize=bool(data["auto_authorize"]),
        created_at=int(data["created_at"]),
    )
