"""The built-in user directory: names and scrypt-hashed passwords."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from oauth_tai.audit import BY_ADMINISTRATOR, audit
from oauth_tai.database import sessions, users
from oauth_tai.errors import AlreadyExists, InvalidValue, NotFound
from oauth_tai.provider.hashing import (
    burn_password_check,
    hash_password,
    verify_password,
)

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
MIN_PASSWORD_LENGTH = 8


class UserDirectory:
    """Add, list, remove and authenticate the provider's own users.

    :param engine: the database.
    :param on_remove: called with a user name before the user is deleted,
        so that the grants the user gave end with them.
    """

    def __init__(
        self, engine: Engine, on_remove: Callable[[str], object] | None = None
    ) -> None:
        self.engine = engine
        self.on_remove = on_remove

    def add(self, username: str, password: str) -> None:
        """Add a user; raise for a bad name, a short password or a taken name."""
        if not _USERNAME.fullmatch(username):
            raise InvalidValue(
                "a user name is 1 to 128 letters, digits, '.', '_', '@' or '-'"
            )
        if len(password.strip()) < MIN_PASSWORD_LENGTH:
            raise InvalidValue(
                f"a password has at least {MIN_PASSWORD_LENGTH} characters"
            )

        row = {
            "username": username,
            "password_hash": hash_password(password),
            "created_at": int(time.time()),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(users).values(**row))
        except IntegrityError as exc:
            raise AlreadyExists("user", username) from exc

        audit("user_added", by=BY_ADMINISTRATOR, user=username)

    def list(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users.c.username).order_by(users.c.username))
            return [row.username for row in rows]

    def exists(self, username: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users.c.username).where(users.c.username == username)
            ).first()
        return row is not None

    def delete(self, username: str) -> None:
        if not self.exists(username):
            raise NotFound("user", username)

        if self.on_remove is not None:
            self.on_remove(username)

        with self.engine.begin() as conn:
            # Their browser sessions end with them: a session must not
            # outlive the user it names, nor pass to a later namesake.
            conn.execute(delete(sessions).where(sessions.c.username == username))
            result = conn.execute(delete(users).where(users.c.username == username))
        if result.rowcount == 0:
            raise NotFound("user", username)

        audit("user_deleted", by=BY_ADMINISTRATOR, user=username)

    def authenticate(self, username: str, password: str) -> bool:
        """Tell whether the password is the user's, in time that hides which."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users.c.password_hash).where(users.c.username == username)
            ).first()

        if row is None:
            burn_password_check(password)
            return False

        return verify_password(password, row.password_hash)
