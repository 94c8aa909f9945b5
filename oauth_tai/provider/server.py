"""The oauthlib endpoints the provider exposes, assembled once."""

from __future__ import annotations

from typing import Any

from oauthlib.common import Request
from oauthlib.oauth2 import (
    AuthorizationCodeGrant,
    AuthorizationEndpoint,
    BearerToken,
    IntrospectEndpoint,
    RefreshTokenGrant,
    RevocationEndpoint,
    TokenEndpoint,
)
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import (
    code_challenge_method_s256,
)

from oauth_tai.provider.hashing import new_secret
from oauth_tai.provider.validator import ProviderValidator


class _S256CodeGrant(AuthorizationCodeGrant):
    # RFC 9700 §2.1.1: "plain" PKCE protects nothing once the authorization
    # request leaks, so only S256 is offered.
    _code_challenge_methods = {"S256": code_challenge_method_s256}


class ProviderServer(
    AuthorizationEndpoint, TokenEndpoint, IntrospectEndpoint, RevocationEndpoint
):
    """Authorization code and refresh grants, introspection and revocation."""

    def __init__(self, validator: ProviderValidator) -> None:
        self.validator = validator
        code_grant = _S256CodeGrant(validator)
        refresh_grant = RefreshTokenGrant(validator, issue_new_refresh_tokens=True)
        bearer = BearerToken(
            validator,
            token_generator=_generate_token,
            expires_in=_access_token_lifetime(validator),
            refresh_token_generator=_generate_token,
        )
        AuthorizationEndpoint.__init__(
            self,
            default_response_type="code",
            response_types={"code": code_grant},
            default_token_type=bearer,  # type: ignore[arg-type]
        )
        TokenEndpoint.__init__(
            self,
            default_grant_type="authorization_code",
            grant_types={
                "authorization_code": code_grant,
                "refresh_token": refresh_grant,
            },
            default_token_type=bearer,  # type: ignore[arg-type]
        )
        IntrospectEndpoint.__init__(self, validator, ("access_token", "refresh_token"))
        RevocationEndpoint.__init__(self, validator, ("access_token", "refresh_token"))


def _generate_token(_request: Request) -> str:
    return new_secret()


def _access_token_lifetime(validator: ProviderValidator) -> Any:
    def lifetime(request: Request) -> int:
        return validator.store.access_token_lifetime(int(vars(request)["grant_id"]))

    return lifetime
