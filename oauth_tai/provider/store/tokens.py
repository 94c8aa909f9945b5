"""Access and refresh tokens: issuing, refreshing, revoking and introspecting.

Only a token's hash is stored. Tokens hang off a grant and never outlive
it: an access token lives ``access_token_lifetime`` or until its grant
ends, whichever comes first, and a refresh token exactly as long as its
grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from oauth_tai.database import consumers, grants, tokens
from oauth_tai.provider.hashing import token_hash
from oauth_tai.provider.store.base import ACCESS, REFRESH
from oauth_tai.provider.store.grants import GrantStore


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    grant_id: int
    client_id: str
    username: str
    scope: str
    grant_expires_at: int
    active: bool
    retired: bool


class IssuedTokenStore(GrantStore):
    """Issue tokens under a grant, and answer for them afterwards."""

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
