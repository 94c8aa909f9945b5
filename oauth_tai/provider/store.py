"""Grants, authorization codes and tokens, in the database.

A grant is a user's permission to one consumer; it starts at consent and
lasts ``grant_lifetime``. Codes and tokens hang off a grant and never
outlive it. Every revocation reports the digests of the access tokens it
ended through ``on_revoke``, so the caches in front can forget them at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, text, update

from oauth_tai.database import codes, consumers, grants, revocations, tokens
from oauth_tai.provider.hashing import token_hash

ACCESS = "access"
REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long each thing lives, in seconds."""

    code: int = 60
    access_token: int = 43_200
    grant: int = 15_768_000


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """A grant as the Application Access page shows it."""

    id: int
    client_id: str
    consumer_name: str
    scope: str
    authorized_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class CodeRecord:
    grant_id: int
    client_id: str
    username: str
    scope: str
    redirect_uri: str
    challenge: str | None
    challenge_method: str | None
    expires_at: int
    used_at: int | None


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    grant_id: int
    client_id: str
    username: str
    scope: str
    grant_expires_at: int
    active: bool
    retired: bool


class TokenStore:
    """Keep grants, codes and tokens, and answer introspection.

    :param engine: the database.
    :param lifetimes: the code, access token and grant lifetimes.
    :param on_revoke: called with the SHA-256 digests of access tokens that
        were just revoked.
    """

    def __init__(
        self,
        engine: Engine,
        lifetimes: Lifetimes | None = None,
        on_revoke: Callable[[list[bytes]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.lifetimes = lifetimes or Lifetimes()
        self.on_revoke = on_revoke
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    # -- grants ---------------------------------------------------------

    def consent(self, username: str, client_id: str, scope: str) -> int:
        """Record the user's consent; renew a live grant or start a new one."""
        now = self.now()
        expires = now + self.lifetimes.grant
        with self.engine.begin() as conn:
            live = conn.execute(
                select(grants.c.id).where(
                    grants.c.username == username,
                    grants.c.client_id == client_id,
                    grants.c.revoked_at.is_(None),
                    grants.c.expires_at > now,
                )
            ).first()
            if live is not None:
                conn.execute(
                    update(grants)
                    .where(grants.c.id == live.id)
                    .values(authorized_at=now, expires_at=expires, scope=scope)
                )
                return int(live.id)

            result = conn.execute(
                insert(grants).values(
                    username=username,
                    client_id=client_id,
                    scope=scope,
                    authorized_at=now,
                    expires_at=expires,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def grants_of(self, username: str) -> list[GrantInfo]:
        """Return the user's live grants, newest first."""
        now = self.now()
        query = (
            select(grants, consumers.c.name)
            .join(consumers, consumers.c.client_id == grants.c.client_id)
            .where(
                grants.c.username == username,
                grants.c.revoked_at.is_(None),
                grants.c.expires_at > now,
            )
            .order_by(grants.c.authorized_at.desc())
        )
        with self.engine.connect() as conn:
            return [
                GrantInfo(
                    id=row.id,
                    client_id=row.client_id,
                    consumer_name=row.name,
                    scope=row.scope,
                    authorized_at=row.authorized_at,
                    expires_at=row.expires_at,
                )
                for row in conn.execute(query)
            ]

    def revoke_consumer_for_user(self, username: str, client_id: str) -> int:
        """Revoke every grant the user gave the consumer; return how many."""
        where = and_(grants.c.username == username, grants.c.client_id == client_id)
        return self._revoke_grants(where)

    def revoke_consumer(self, client_id: str) -> int:
        """Revoke every grant a consumer holds, from every user."""
        return self._revoke_grants(grants.c.client_id == client_id)

    def revoke_user(self, username: str) -> int:
        """Revoke every grant a user gave, to every consumer."""
        return self._revoke_grants(grants.c.username == username)

    def revoke_grant(self, grant_id: int) -> int:
        return self._revoke_grants(grants.c.id == grant_id)

    def _revoke_grants(self, where: Any) -> int:
        now = self.now()
        with self.engine.begin() as conn:
            ids = [
                row.id
                for row in conn.execute(
                    select(grants.c.id).where(where, grants.c.revoked_at.is_(None))
                )
            ]
            if not ids:
                return 0

            conn.execute(
                update(grants).where(grants.c.id.in_(ids)).values(revoked_at=now)
            )
            digests = self._revoke_tokens(conn, tokens.c.grant_id.in_(ids), now)

        self._announce(digests)
        return len(ids)

    # -- codes ----------------------------------------------------------

    def save_code(
        self,
        code: str,
        grant_id: int,
        client_id: str,
        redirect_uri: str,
        challenge: str | None,
        challenge_method: str | None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(codes).values(
                    code_hash=token_hash(code),
                    grant_id=grant_id,
                    client_id=client_id,
                    redirect_uri=redirect_uri,
                    challenge=challenge,
                    challenge_method=challenge_method,
                    expires_at=self.now() + self.lifetimes.code,
                )
            )

    def find_code(self, code: str) -> CodeRecord | None:
        query = (
            select(codes, grants.c.username, grants.c.scope)
            .join(grants, grants.c.id == codes.c.grant_id)
            .where(codes.c.code_hash == token_hash(code))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()

        if row is None:
            return None

        return CodeRecord(
            grant_id=row.grant_id,
            client_id=row.client_id,
            username=row.username,
            scope=row.scope,
            redirect_uri=row.redirect_uri,
            challenge=row.challenge,
            challenge_method=row.challenge_method,
            expires_at=row.expires_at,
            used_at=row.used_at,
        )

    def claim_code(self, code: str) -> bool:
        """Mark the code used; tell whether this call was the one that did."""
        now = self.now()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(codes)
                .where(
                    codes.c.code_hash == token_hash(code),
                    codes.c.used_at.is_(None),
                    codes.c.expires_at > now,
                )
                .values(used_at=now)
            )
        return result.rowcount == 1

    def revoke_issued_from_code(self, code: str) -> None:
        """RFC 6749 §4.1.2: a replayed code ends the tokens issued from it."""
        now = self.now()
        with self.engine.begin() as conn:
            digests = self._revoke_tokens(
                conn, tokens.c.code_hash == token_hash(code), now
            )
        self._announce(digests)

    # -- tokens ---------------------------------------------------------

    def issue(
        self,
        grant_id: int,
        access_token: str,
        refresh_token: str | None,
        expires_in: int,
        code: str | None = None,
    ) -> None:
        now = self.now()
        code_hash = None if code is None else token_hash(code)
        rows = [
            {
                "token_hash": token_hash(access_token),
                "kind": ACCESS,
                "grant_id": grant_id,
                "code_hash": code_hash,
                "issued_at": now,
                "expires_at": now + expires_in,
            }
        ]
        if refresh_token is not None:
            rows.append(
                {
                    "token_hash": token_hash(refresh_token),
                    "kind": REFRESH,
                    "grant_id": grant_id,
                    "code_hash": code_hash,
                    "issued_at": now,
                    "expires_at": self._grant_expiry(grant_id),
                }
            )
        with self.engine.begin() as conn:
            conn.execute(insert(tokens), rows)

    def access_token_lifetime(self, grant_id: int) -> int:
        """Seconds a new access token lives: never past its grant."""
        remaining = self._grant_expiry(grant_id) - self.now()
        return max(0, min(self.lifetimes.access_token, remaining))

    def find_refresh(self, refresh_token: str) -> RefreshRecord | None:
        now = self.now()
        query = (
            select(
                tokens,
                grants.c.username,
                grants.c.client_id,
                grants.c.scope,
                grants.c.expires_at.label("grant_expires_at"),
                grants.c.revoked_at.label("grant_revoked_at"),
                consumers.c.enabled,
            )
            .join(grants, grants.c.id == tokens.c.grant_id)
            .join(consumers, consumers.c.client_id == grants.c.client_id)
            .where(
                tokens.c.token_hash == token_hash(refresh_token),
                tokens.c.kind == REFRESH,
            )
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()

        if row is None:
            return None

        live = (
            row.revoked_at is None
            and row.grant_revoked_at is None
            and row.grant_expires_at > now
            and row.expires_at > now
            and bool(row.enabled)
        )
        return RefreshRecord(
            grant_id=row.grant_id,
            client_id=row.client_id,
            username=row.username,
            scope=row.scope,
            grant_expires_at=row.grant_expires_at,
            active=live and row.retired_at is None,
            retired=row.retired_at is not None,
        )

    def retire_refresh(self, refresh_token: str) -> bool:
        """Retire a refresh token on use; tell whether this call did it.

        Of two concurrent uses of one refresh token, exactly one wins here.
        """
        now = self.now()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(tokens)
                .where(
                    tokens.c.token_hash == token_hash(refresh_token),
                    tokens.c.kind == REFRESH,
                    tokens.c.retired_at.is_(None),
                    tokens.c.revoked_at.is_(None),
                )
                .values(retired_at=now)
            )
        return result.rowcount == 1

    def revoke_token(self, token: str, client_id: str) -> str | None:
        """RFC 7009: revoke the consumer's own token; ignore anyone else's.

        Revoking a refresh token ends its whole grant, access tokens too.
        Returns the user whose grant the token was of, or ``None`` when it
        is not a token of this consumer.
        """
        digest = token_hash(token)
        query = (
            select(tokens.c.kind, tokens.c.grant_id, grants.c.username)
            .join(grants, grants.c.id == tokens.c.grant_id)
            .where(tokens.c.token_hash == digest, grants.c.client_id == client_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()

        if row is None:
            return None

        if row.kind == REFRESH:
            self.revoke_grant(row.grant_id)
            return str(row.username)

        now = self.now()
        with self.engine.begin() as conn:
            digests = self._revoke_tokens(conn, tokens.c.token_hash == digest, now)
        self._announce(digests)
        return str(row.username)

    def introspect(self, token: str) -> dict[str, Any] | None:
        """Return RFC 7662 claims for a live access token, else ``None``."""
        now = self.now()
        query = (
            select(
                tokens.c.issued_at,
                tokens.c.expires_at,
                grants.c.username,
                grants.c.client_id,
                grants.c.scope,
                consumers.c.name,
            )
            .join(grants, grants.c.id == tokens.c.grant_id)
            .join(consumers, consumers.c.client_id == grants.c.client_id)
            .where(
                tokens.c.token_hash == token_hash(token),
                tokens.c.kind == ACCESS,
                tokens.c.revoked_at.is_(None),
                tokens.c.expires_at > now,
                grants.c.revoked_at.is_(None),
                grants.c.expires_at > now,
                consumers.c.enabled.is_(True),
            )
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()

        if row is None:
            return None

        return {
            "active": True,
            "scope": row.scope,
            "client_id": row.client_id,
            "client_name": row.name,
            "username": row.username,
            "sub": row.username,
            "token_type": "Bearer",
            "exp": row.expires_at,
            "iat": row.issued_at,
        }

    def revocations_since(self, last_id: int) -> tuple[int, list[bytes]]:
        """Return the newest revocation id and the digests revoked after ``last_id``."""
        query = (
            select(revocations.c.id, revocations.c.token_hash)
            .where(revocations.c.id > last_id)
            .order_by(revocations.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()

        if not rows:
            return last_id, []
        return int(rows[-1].id), [bytes.fromhex(row.token_hash) for row in rows]

    def latest_revocation(self) -> int:
        with self.engine.connect() as conn:
            newest = conn.execute(select(func.max(revocations.c.id))).scalar()
        return int(newest or 0)

    def purge(self) -> int:
        """Delete expired codes and tokens; return how many rows went."""
        now = self.now()
        with self.engine.begin() as conn:
            # A revocation matters while the token could still be cached,
            # which is never past the longest access token lifetime.
            conn.execute(
                revocations.delete().where(
                    revocations.c.revoked_at <= now - self.lifetimes.access_token
                )
            )
            gone = conn.execute(
                codes.delete().where(codes.c.expires_at <= now)
            ).rowcount
            gone += conn.execute(
                tokens.delete().where(tokens.c.expires_at <= now)
            ).rowcount
        return gone

    def _grant_expiry(self, grant_id: int) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(grants.c.expires_at).where(grants.c.id == grant_id)
                ).scalar_one()
            )

    def _revoke_tokens(self, conn: Connection, where: Any, now: int) -> list[bytes]:
        live = and_(where, tokens.c.revoked_at.is_(None))
        digests = [
            bytes.fromhex(row.token_hash)
            for row in conn.execute(
                select(tokens.c.token_hash).where(live, tokens.c.kind == ACCESS)
            )
        ]
        conn.execute(update(tokens).where(live).values(revoked_at=now))
        if digests:
            _lock_revocation_feed(conn)
            conn.execute(
                insert(revocations),
                [{"token_hash": d.hex(), "revoked_at": now} for d in digests],
            )
        return digests

    def _announce(self, digests: Iterable[bytes]) -> None:
        digests = list(digests)
        if digests and self.on_revoke is not None:
            self.on_revoke(digests)


def _lock_revocation_feed(conn: Connection) -> None:
    """Make revocations commit in the order of their ids, until ``conn`` ends.

    Followers read the feed by id. PostgreSQL numbers a row when it is
    inserted but shows it at commit: without this lock a revocation could
    commit after one with a higher id that a follower has read already, and
    never be seen. Inserts wait for each other here; reads do not. SQLite
    has one writer at a time anyway.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE revocations IN SHARE ROW EXCLUSIVE MODE"))
