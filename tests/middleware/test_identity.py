"""Reading introspection answers into identities."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oauth_tai.identity import identity_from_answer


def _answer(user: str, **changes: Any) -> dict[str, Any]:
    # Through JSON, as answers arrive: every string is a new object.
    answer = {
        "active": True,
        "username": user,
        "client_id": "notes-app",
        "client_name": "Notes App",
        "scope": "connections profile",
        "aud": ["https://api.example"],
        "iss": "https://provider.example",
        "exp": 2_000_000_000,
        **changes,
    }
    loaded: dict[str, Any] = json.loads(json.dumps(answer))
    return loaded


def test_identities_of_one_consumer_share_its_strings_and_sets() -> None:
    """A cache of many tokens keeps one copy of what their identities share."""
    first = identity_from_answer(_answer("alice"), "0" * 12)
    second = identity_from_answer(_answer("bob"), "1" * 12)

    assert first is not None and second is not None
    assert first.user == "alice" and second.user == "bob"
    assert first.consumer_id is second.consumer_id
    assert first.consumer_name is second.consumer_name
    assert first.scopes is second.scopes
    assert first.audiences is second.audiences
    assert first.issuer is second.issuer
    assert first.scopes == frozenset({"connections", "profile"})


@pytest.mark.parametrize(
    "changes",
    [
        {"active": "true"},
        {"client_id": ""},
        {"client_id": 7},
        {"exp": "2000000000"},
        {"exp": True},
        {"scope": ["ok", 3]},
        {"aud": {"a": 1}},
    ],
)
def test_an_unreadable_answer_is_no_identity(changes: dict[str, Any]) -> None:
    assert identity_from_answer(_answer("alice", **changes), "0" * 12) is None
