"""Grants: a user's permission to one consumer, from consent to revocation.

A grant starts at consent and lasts ``grant_lifetime``; a new consent
renews a live one. Revoking a grant revokes every token issued under it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import and_, insert, select, update

from oauth_tai.database import consumers, grants, tokens
from oauth_tai.db_lock import hold_lock
from oauth_tai.provider.store.revocations import RevocationFeed

# The lock space of consents ("oTAC"), beside the migrations' ("oTAI").
_CONSENT_SPACE: Final = 0x6F544143


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """A grant as the Application Access page shows it."""

    id: int
    client_id: str
    consumer_name: str
    scope: str
    authorized_at: int
    expires_at: int


class GrantStore(RevocationFeed):
    """Record consents, list a user's grants, and revoke them."""

    def consent(self, username: str, client_id: str, scope: str) -> int:
        """Record the user's consent; renew a live grant or start a new one."""
        now = self.now()
        expires = now + self.lifetimes.grant
        with self.engine.begin() as conn:
            # Two consents at once (two tabs, a double click) must not both
            # find no live grant and start one each.
            hold_lock(conn, _CONSENT_SPACE, json.dumps([username, client_id]))
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

    def _grant_expiry(self, grant_id: int) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(grants.c.expires_at).where(grants.c.id == grant_id)
                ).scalar_one()
            )
