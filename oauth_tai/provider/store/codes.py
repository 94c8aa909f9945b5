"""Authorization codes: saved at consent, claimed once at the token endpoint.

Only a code's hash is stored. A code lives ``code_lifetime`` and can be
claimed once; a second claim is a replay, and ends what the first issued.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update

from oauth_tai.database import codes, grants, tokens
from oauth_tai.provider.hashing import token_hash
from oauth_tai.provider.store.revocations import RevocationFeed


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


class CodeStore(RevocationFeed):
    """Save, find and claim authorization codes."""

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
