"""Status updates and activity entries, kept in the database."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select

from oauth_tai.database import entries

STATUS = "status"
ACTIVITY = "activity"
PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class Entry:
    """One post in a user's stream, with the consumer that made it."""

    id: int
    kind: str
    username: str
    content: str
    verb: str
    generator_id: str | None
    generator_name: str | None
    published: int

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": f"urn:oauth-tai:entry:{self.id}",
            "actor": {"id": self.username, "displayName": self.username},
            "verb": self.verb,
            "object": {"objectType": "note", "content": self.content},
            "published": _iso(self.published),
        }
        if self.generator_id is not None:
            data["generator"] = {
                "id": self.generator_id,
                "displayName": self.generator_name,
            }
        return data


class EntryStore:
    """Add and list the entries of each user."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        kind: str,
        username: str,
        content: str,
        verb: str,
        generator: tuple[str, str] | None,
    ) -> Entry:
        row: dict[str, Any] = {
            "kind": kind,
            "username": username,
            "content": content,
            "verb": verb,
            "generator_id": None if generator is None else generator[0],
            "generator_name": None if generator is None else generator[1],
            "published": int(time.time()),
        }
        with self.engine.begin() as conn:
            key = conn.execute(insert(entries).values(**row)).inserted_primary_key
        assert key is not None
        return Entry(id=int(key[0]), **row)

    def list(self, username: str, kind: str | None = None) -> list[Entry]:
        """Return the user's newest entries; every kind when ``kind`` is None."""
        query = select(entries).where(entries.c.username == username)
        if kind is not None:
            query = query.where(entries.c.kind == kind)
        query = query.order_by(entries.c.id.desc()).limit(PAGE_SIZE)
        with self.engine.connect() as conn:
            return [Entry(**row._mapping) for row in conn.execute(query)]


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
