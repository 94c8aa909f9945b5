"""Paths the gateway cannot judge safely are refused, not guessed at."""

from __future__ import annotations

import pytest

from oauth_tai.gateway.wire import canonical_path


@pytest.mark.parametrize(
    "path", ["/public/..\\api/x", "/api\x00/x", "/api/x\r\n", "relative/x"]
)
def test_ambiguous_paths_have_no_canonical_form(path: str) -> None:
    assert canonical_path(path) is None


@pytest.mark.parametrize(
    "path, canonical",
    [("/public/../api/x", "/api/x"), ("//api//x/", "/api/x/"), ("/a/./b", "/a/b")],
)
def test_dot_segments_and_doubled_slashes_resolve(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical
