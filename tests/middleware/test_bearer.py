"""Taking the bearer token from the Authorization header (RFC 6750 §2.1)."""

from __future__ import annotations

import pytest

from oauth_tai.bearer import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingToken,
    ServiceUnavailable,
    take_token,
)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_scheme_is_case_insensitive(scheme: str) -> None:
    """The scheme matches in any case; the token is returned as sent."""
    assert take_token([f"{scheme} AbC-123._~+/"]) == "AbC-123._~+/"


def test_no_header_gives_none() -> None:
    """Without an Authorization header there is no token and no error."""
    assert take_token([]) is None


@pytest.mark.parametrize(
    "value",
    ["BearerX abc", "Bearerabc", "Basic dXNlcjpwYXNz", "Digest username=x", "abc"],
)
def test_other_schemes_give_none(value: str) -> None:
    """A scheme that is not exactly Bearer is left to other authentication."""
    assert take_token([value]) is None


@pytest.mark.parametrize("token", ["abc=", "abc==", "YWJj+/9=="])
def test_token68_padding_is_accepted(token: str) -> None:
    """Trailing ``=`` padding is part of a token68."""
    assert take_token([f"Bearer {token}"]) == token


def test_spaces_around_the_token_are_tolerated() -> None:
    """RFC 9110 allows one or more SP after the scheme and trailing OWS."""
    assert take_token(["Bearer   abc  "]) == "abc"


def test_two_headers_are_refused() -> None:
    """Two Authorization values are one credential too many."""
    with pytest.raises(InvalidRequest):
        take_token(["Bearer abc", "Bearer def"])


@pytest.mark.parametrize(
    "value",
    [
        "Bearer a b",
        "Bearer ",
        "Bearer",
        "Bearer a,b",
        "Bearer abc, Bearer def",
        "Bearer =abc",
        "Bearer ab=c",
        'Bearer "abc"',
        "Bearer abc\x00",
        "Bearer ab\x01c",
        "Bearer abc\x7f",
        "Bearer abc\n",
        "Bearer abc\r\n",
        "Bearer abc\x1f",
        "Bearer abc\x0b",
        "Bearer ab\tc",
        "Bearer abc\u00e9",
    ],
)
def test_malformed_credentials_are_invalid_requests(value: str) -> None:
    """A Bearer value that is not exactly one token68 is a 400."""
    with pytest.raises(InvalidRequest) as refusal:
        take_token([value])

    assert refusal.value.status == 400
    assert refusal.value.error == "invalid_request"


def test_missing_token_challenge_has_no_error() -> None:
    """RFC 6750 §3.1: a request without credentials gets only the realm."""
    assert MissingToken().challenge("api") == 'Bearer realm="api"'


def test_invalid_token_challenge_names_the_error() -> None:
    """An invalid token's challenge carries its code and description."""
    challenge = InvalidToken("the access token is not active").challenge("api")

    assert challenge == (
        'Bearer realm="api", error="invalid_token", '
        'error_description="the access token is not active"'
    )


def test_challenge_escapes_quotes_and_backslashes() -> None:
    """Quotes and backslashes in the realm are escaped as a quoted-string."""
    challenge = MissingToken().challenge('say "hi" \\ bye')

    assert challenge == 'Bearer realm="say \\"hi\\" \\\\ bye"'


def test_challenge_drops_control_characters() -> None:
    """A control character cannot break the header or add a line to it."""
    challenge = InvalidRequest("bad\r\nSet-Cookie: x=1").challenge("r\x00ealm")

    assert "\r" not in challenge and "\n" not in challenge and "\x00" not in challenge
    assert challenge == (
        'Bearer realm="realm", error="invalid_request", '
        'error_description="badSet-Cookie: x=1"'
    )


def test_challenge_carries_scope() -> None:
    """A scope, when given, is the last parameter of the challenge."""
    challenge = InsufficientScope(scope="connections").challenge("api")

    assert challenge == (
        'Bearer realm="api", error="insufficient_scope", scope="connections"'
    )


def test_refusals_have_their_status() -> None:
    """Each refusal's class carries the status it is answered with."""
    assert (MissingToken().status, MissingToken().error) == (401, None)
    assert (InvalidRequest().status, InvalidToken().status) == (400, 401)
    assert ServiceUnavailable().status == 503
