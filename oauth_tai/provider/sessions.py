"""Browser sessions for the provider's pages, and their CSRF tokens.

The cookie holds a random session id; the database holds only its hash,
so a copy of the table logs nobody in. A form's CSRF token is an HMAC of
the session id: it is valid for that session only and needs no storage.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

from sqlalchemy import Engine, delete, insert, select

from oauth_tai.database import sessions
from oauth_tai.provider.hashing import new_secret, token_hash

SESSION_COOKIE: Final = "oauth_tai_session"
LOGIN_COOKIE: Final = "oauth_tai_login"
# A login session is for the consent round trip and the Application Access
# page, not a long-lived single sign-on.
SESSION_SECONDS: Final = 8 * 3600


class SessionStore:
    """Create, find and end browser sessions."""

    def __init__(self, engine: Engine, secret: bytes) -> None:
        self.engine = engine
        self._csrf_key = hashlib.sha256(b"oauth-tai csrf\0" + secret).digest()

    def create(self, username: str) -> str:
        """Start a session for ``username``; return the cookie value."""
        session_id = new_secret()
        with self.engine.begin() as conn:
            conn.execute(
                insert(sessions).values(
                    session_hash=token_hash(session_id),
                    username=username,
                    expires_at=int(time.time()) + SESSION_SECONDS,
                )
            )
        return session_id

    def user(self, session_id: str | None) -> str | None:
        """Return the user of a live session, or ``None``."""
        if not session_id:
            return None

        with self.engine.connect() as conn:
            row = conn.execute(
                select(sessions.c.username).where(
                    sessions.c.session_hash == token_hash(session_id),
                    sessions.c.expires_at > int(time.time()),
                )
            ).first()
        return None if row is None else str(row.username)

    def end(self, session_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(sessions).where(
                    sessions.c.session_hash == token_hash(session_id)
                )
            )

    def csrf_token(self, value: str) -> str:
        """Return the CSRF token bound to a session id or a login nonce."""
        return hmac.new(self._csrf_key, value.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, value: str | None, token: str | None) -> bool:
        if not value or not token:
            return False
        return hmac.compare_digest(self.csrf_token(value), token)
