"""RFC 9068 JWT access tokens in the middleware, from a real Authlib provider.

Every token here is either signed with the provider's own keys or built by
hand (``tests.interop.handmade``) for the attacks no library will sign; the
JWKS comes from the provider over HTTP on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator

import pytest
from webtest import TestApp

from oauth_tai.errors import ConfigurationError
from oauth_tai.settings import Settings
from oauth_tai.system import build_validator
from oauth_tai.validators.jwks import JWKS_MAX_AGE, JWKS_REFETCH_INTERVAL
from oauth_tai.validators.jwt import JwtIssuer, JwtValidator
from tests.interop import handmade
from tests.interop.authlib_provider import (
    CONSUMER_ID,
    CONSUMER_NAME,
    USER_ID,
    USERNAME,
    AuthlibProvider,
    running_provider,
)
from tests.interop.echo import CountingValidator, bearer, protect


class Clock:
    """Monotonic seconds that a test moves forward by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def authlib_provider() -> Iterator[AuthlibProvider]:
    with running_provider() as provider:
        yield provider


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def validator(authlib_provider: AuthlibProvider, clock: Clock) -> JwtValidator:
    issuer = JwtIssuer(
        authlib_provider.issuer, authlib_provider.jwks_url, authlib_provider.audience
    )
    return JwtValidator([issuer], clock=clock)


@pytest.fixture
def app(validator: JwtValidator) -> TestApp:
    return protect(validator)


def assert_refused(app: TestApp, token: str) -> None:
    response = app.get("/files", headers=bearer(token), status=401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def now() -> int:
    return int(time.time())


# What is accepted, and how it is read.


def test_a_token_signed_with_the_providers_key_is_accepted(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    seen = app.get("/files", headers=bearer(authlib_provider.sign())).json

    assert seen["user"] == USERNAME
    assert seen["consumer"] == CONSUMER_ID
    assert seen["consumer_name"] == CONSUMER_NAME
    assert seen["scopes"] == ["files.read", "files.write"]


def test_a_hand_signed_token_is_accepted(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    # The baseline for the hand-made attacks below: the helper signs right.
    token = handmade.rs256(
        authlib_provider.header(),
        authlib_provider.claims(),
        authlib_provider.private_key(),
    )

    assert app.get("/files", headers=bearer(token)).json["user"] == USERNAME


def test_the_user_is_sub_without_a_username_claim(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = authlib_provider.sign(authlib_provider.claims(username=None))

    assert app.get("/files", headers=bearer(token)).json["user"] == USER_ID


def test_a_scope_list_is_read_like_a_scope_string(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    claims = authlib_provider.claims(scope=["files.read", "files.share"])
    token = authlib_provider.sign(claims)

    seen = app.get("/files", headers=bearer(token)).json

    assert seen["scopes"] == ["files.read", "files.share"]


def test_the_full_media_type_is_accepted_in_any_case(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    header = authlib_provider.header(typ="Application/AT+JWT")
    token = authlib_provider.sign(header=header)

    assert app.get("/files", headers=bearer(token)).json["user"] == USERNAME


def test_an_audience_list_holding_ours_is_accepted(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    claims = authlib_provider.claims(aud=["other-api", authlib_provider.audience])

    token = authlib_provider.sign(claims)

    assert app.get("/files", headers=bearer(token)).json["user"] == USERNAME


def test_nbf_within_the_leeway_is_accepted(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = authlib_provider.sign(authlib_provider.claims(nbf=now() + 10))

    assert app.get("/files", headers=bearer(token)).json["user"] == USERNAME


# Refusals.


def test_an_expired_token_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    claims = authlib_provider.claims(iat=now() - 700, exp=now() - 120)

    assert_refused(app, authlib_provider.sign(claims))


def test_a_token_expired_within_the_leeway_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    # The leeway forgives clock skew on nbf and iat; the middleware still
    # never accepts a token past its exp.
    claims = authlib_provider.claims(iat=now() - 700, exp=now() - 5)

    assert_refused(app, authlib_provider.sign(claims))


def test_a_token_not_yet_valid_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = authlib_provider.sign(authlib_provider.claims(nbf=now() + 300))

    assert_refused(app, token)


def test_a_token_issued_in_the_future_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = authlib_provider.sign(authlib_provider.claims(iat=now() + 300))

    assert_refused(app, token)


def test_a_wrong_issuer_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    claims = authlib_provider.claims(iss=authlib_provider.issuer + "/")

    assert_refused(app, authlib_provider.sign(claims))


def test_a_wrong_audience_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = authlib_provider.sign(authlib_provider.claims(aud="other-api"))

    assert_refused(app, token)


def test_typ_jwt_instead_of_at_jwt_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    # An ID token or any other JWT the provider signs is not an access token.
    token = authlib_provider.sign(header=authlib_provider.header(typ="JWT"))

    assert_refused(app, token)


def test_a_token_without_typ_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = authlib_provider.sign(header=authlib_provider.header(typ=None))

    assert_refused(app, token)


def test_alg_none_is_refused(app: TestApp, authlib_provider: AuthlibProvider) -> None:
    token = handmade.unsigned(authlib_provider.header(), authlib_provider.claims())

    assert token.endswith(".")
    assert_refused(app, token)


def test_hs256_keyed_with_the_public_key_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    # Algorithm confusion: a verifier that took the published key as an
    # HMAC secret would find this signature valid.
    pem = authlib_provider.public_pem()
    token = handmade.hs256(authlib_provider.header(), authlib_provider.claims(), pem)
    signing_input, _, signature = token.rpartition(".")
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert signature == handmade.b64url(mac)

    assert_refused(app, token)


def test_an_unknown_critical_header_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    header = authlib_provider.header(crit=["exp-policy"], **{"exp-policy": "strict"})
    token = handmade.rs256(
        header, authlib_provider.claims(), authlib_provider.private_key()
    )

    assert_refused(app, token)


def test_a_critical_extension_a_jose_library_knows_is_refused_too(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    # RFC 7797's b64 changes what is signed; RFC 9068 access tokens have no
    # use for it, so oauth-tai refuses it even where PyJWT would not.
    header = authlib_provider.header(crit=["b64"], b64=True)
    token = handmade.rs256(
        header, authlib_provider.claims(), authlib_provider.private_key()
    )

    assert_refused(app, token)


def test_a_tampered_payload_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = handmade.tamper(authlib_provider.sign(), username="mallory")

    assert_refused(app, token)


def test_a_token_signed_by_another_key_under_the_providers_kid_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    impostor = authlib_provider.new_key(publish=False)
    header = authlib_provider.header(kid=authlib_provider.signing_key.kid)

    assert_refused(app, authlib_provider.sign(header=header, key=impostor))


def test_an_algorithm_outside_the_allow_list_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    header = authlib_provider.header(alg="RS384")

    assert_refused(app, authlib_provider.sign(header=header))


def test_a_token_without_client_id_is_refused(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = authlib_provider.sign(authlib_provider.claims(client_id=None))

    assert_refused(app, token)


def test_a_token_that_is_not_a_jwt_is_refused(app: TestApp) -> None:
    assert_refused(app, "2YotnFZFEjr1zCsicMWpAA")


# The JWKS: fetched once, refetched for an unknown kid at most once a window.


def test_a_rotated_key_is_accepted_after_one_refetch(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    app.get("/files", headers=bearer(authlib_provider.sign()))
    assert authlib_provider.jwks_requests == 1

    authlib_provider.rotate()
    seen = app.get("/files", headers=bearer(authlib_provider.sign())).json

    assert seen["user"] == USERNAME
    assert authlib_provider.jwks_requests == 2


def test_a_flood_of_unknown_kids_refetches_once_per_window(
    app: TestApp, authlib_provider: AuthlibProvider, clock: Clock
) -> None:
    def flood() -> None:
        for _ in range(5):
            key = authlib_provider.new_key(publish=False)
            assert_refused(app, authlib_provider.sign(key=key))

    app.get("/files", headers=bearer(authlib_provider.sign()))
    assert authlib_provider.jwks_requests == 1

    flood()
    assert authlib_provider.jwks_requests == 2

    clock.advance(JWKS_REFETCH_INTERVAL / 2)
    flood()
    assert authlib_provider.jwks_requests == 2

    # Past the interval, not at it: clock arithmetic rounds.
    clock.advance(JWKS_REFETCH_INTERVAL / 2 + 1)
    flood()
    assert authlib_provider.jwks_requests == 3


def test_a_withdrawn_key_stops_verifying_once_the_keys_are_refreshed(
    app: TestApp, authlib_provider: AuthlibProvider, clock: Clock
) -> None:
    old = authlib_provider.signing_key
    app.get("/files", headers=bearer(authlib_provider.sign()))
    authlib_provider.rotate()
    authlib_provider.withdraw(old)

    # Past the age, not at it: (now + age) - now may round to just under it.
    clock.advance(JWKS_MAX_AGE + 1)

    assert_refused(app, authlib_provider.sign(key=old))
    assert authlib_provider.jwks_requests == 2


def test_jwks_down_and_no_keys_cached_answers_503(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    token = authlib_provider.sign()
    authlib_provider.stop()

    response = app.get("/files", headers=bearer(token), status=503)

    assert int(response.headers["Retry-After"]) > 0
    assert "WWW-Authenticate" not in response.headers


def test_a_jwks_error_and_no_keys_cached_answers_503(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    authlib_provider.jwks_status = 500

    app.get("/files", headers=bearer(authlib_provider.sign()), status=503)


def test_cached_keys_still_verify_while_the_jwks_is_down(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    app.get("/files", headers=bearer(authlib_provider.sign()))
    authlib_provider.stop()

    seen = app.get("/files", headers=bearer(authlib_provider.sign())).json

    assert seen["user"] == USERNAME


def test_an_unknown_kid_while_the_jwks_fails_answers_503(
    app: TestApp, authlib_provider: AuthlibProvider
) -> None:
    # It may be a key the provider published while we could not look.
    app.get("/files", headers=bearer(authlib_provider.sign()))
    authlib_provider.jwks_status = 500
    key = authlib_provider.new_key(publish=False)

    app.get("/files", headers=bearer(authlib_provider.sign(key=key)), status=503)


# The cache in front of the validator.


def test_a_repeated_jwt_is_served_from_the_cache(
    validator: JwtValidator, authlib_provider: AuthlibProvider
) -> None:
    counting = CountingValidator(validator)
    app = protect(counting)
    token = authlib_provider.sign()

    first = app.get("/files", headers=bearer(token)).json
    second = app.get("/files", headers=bearer(token)).json

    assert first == second
    assert counting.calls == 1
    assert authlib_provider.jwks_requests == 1


# Several issuers at once.


def test_each_issuer_is_checked_against_its_own_keys_and_audience(
    authlib_provider: AuthlibProvider,
) -> None:
    with running_provider(audience="photos-api") as other:
        app = protect(
            JwtValidator(
                [
                    JwtIssuer(
                        authlib_provider.issuer,
                        authlib_provider.jwks_url,
                        authlib_provider.audience,
                    ),
                    JwtIssuer(other.issuer, other.jwks_url, other.audience),
                ]
            )
        )

        assert app.get("/files", headers=bearer(authlib_provider.sign())).json
        assert app.get("/files", headers=bearer(other.sign())).json

        # The other issuer's name on a token signed with the first one's key.
        claims = other.claims()
        assert_refused(app, authlib_provider.sign(claims))
        assert other.jwks_requests == 2

        # The first issuer's token meant for the other's audience.
        claims = authlib_provider.claims(aud=other.audience)
        assert_refused(app, authlib_provider.sign(claims))


# Configuration.


@pytest.mark.parametrize("algorithms", [("none",), ("HS256",), ("RS256", "HS256"), ()])
def test_symmetric_or_no_algorithms_are_a_configuration_error(
    algorithms: tuple[str, ...],
) -> None:
    issuer = JwtIssuer("https://idp.test", "https://idp.test/jwks", "api", algorithms)

    with pytest.raises(ConfigurationError):
        JwtValidator([issuer])


def test_the_settings_build_a_jwt_validator(
    authlib_provider: AuthlibProvider,
) -> None:
    settings = Settings.load(
        {
            "OAUTH_TAI_JWKS_URL": authlib_provider.jwks_url,
            "OAUTH_TAI_ISSUER": authlib_provider.issuer,
            "OAUTH_TAI_AUDIENCE": authlib_provider.audience,
            "OAUTH_TAI_JWT_LEEWAY": "0",
        }
    )
    # The JWT path never opens the provider's token store.
    app = protect(build_validator(settings, provider=None))

    assert app.get("/files", headers=bearer(authlib_provider.sign())).json
    token = authlib_provider.sign(authlib_provider.claims(nbf=now() + 10))
    assert_refused(app, token)


@pytest.mark.parametrize(
    "missing",
    [{"issuer": ""}, {"audience": ""}, {"introspection_url": "https://idp.test/i"}],
)
def test_a_jwks_url_without_issuer_and_audience_is_a_configuration_error(
    missing: dict[str, str],
) -> None:
    settings = Settings(
        jwks_url="https://idp.test/jwks", issuer="https://idp.test", audience="api"
    ).with_values(**missing)

    with pytest.raises(ConfigurationError):
        build_validator(settings, provider=None)
