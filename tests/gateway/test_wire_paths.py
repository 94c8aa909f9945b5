"""Paths the gateway cannot judge safely are refused, not guessed at."""

from __future__ import annotations

import pytest

from oauth_tai.gateway.wire import canonical_path


@pytest.mark.parametrize(
    "path",
    [
        "/public/..\\api/x",
        "/api\x00/x",
        "/api/x\r\n",
        "relative/x",
        # Merging slashes or not, servers resolve ".." against different
        # segments: /api/public for one, /public for the other.
        "/api//../public",
        "//../api/x",
    ],
)
def test_ambiguous_paths_have_no_canonical_form(path: str) -> None:
    assert canonical_path(path) is None


@pytest.mark.parametrize(
    "path, canonical",
    [("/public/../api/x", "/api/x"), ("//api//x/", "/api/x/"), ("/a/./b", "/a/b")],
)
def test_dot_segments_and_doubled_slashes_resolve(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


@pytest.mark.parametrize(
    "path, judged",
    [
        ("/api;/x", "/api/x"),
        ("/api;jsessionid=1/x", "/api/x"),
        ("/api/x;v=2", "/api/x"),
        ("/app/;jsessionid=1", "/app/"),
        ("/api;a;b=c/x;", "/api/x"),
    ],
)
def test_parameters_are_not_part_of_the_judged_path(path: str, judged: str) -> None:
    """Java servers drop each segment's ;parameters: the policy does too."""
    assert canonical_path(path) == judged


@pytest.mark.parametrize(
    "path",
    [
        "/public/..;/api/x",
        "/api/public/..;/x",
        "/public/..;x=1/api/x",
        "/api/.;/x",
        "/api;x/../public/",
        "/api/;x/../public/",
        "/;x/api/x",
        "/api/;x/public/",
    ],
)
def test_parameters_that_upstreams_read_differently_are_refused(path: str) -> None:
    """A dot segment or an empty name with parameters: Java and RFC disagree."""
    assert canonical_path(path) is None
    assert canonical_path(path, keep_parameters=True) is None


@pytest.mark.parametrize(
    "path, forwarded",
    [
        ("/api;jsessionid=1/x", "/api;jsessionid=1/x"),
        ("/app/;jsessionid=1", "/app/;jsessionid=1"),
        ("//api;v=2//x/", "/api;v=2/x/"),
        ("/public/../api/x", "/api/x"),
    ],
)
def test_forwarded_path_keeps_its_parameters(path: str, forwarded: str) -> None:
    assert canonical_path(path, keep_parameters=True) == forwarded


def test_case_is_kept() -> None:
    """/API/x is not /api/x: the policy compares paths case-sensitively."""
    assert canonical_path("/API/x") == "/API/x"
