"""The oauthlib endpoints the provider exposes, assembled once."""

from __future__ import annotations

import re
from typing import Any

from oauthlib.common import Request
from oauthlib.oauth2 import (
    AuthorizationCodeGrant,
    AuthorizationEndpoint,
    BearerToken,
    IntrospectEndpoint,
    InvalidRequestError,
    RefreshTokenGrant,
    RevocationEndpoint,
    TokenEndpoint,
)
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import (
    code_challenge_method_s256,
)

from oauth_tai.provider.hashing import new_secret
from oauth_tai.provider.validator import ProviderValidator

# RFC 7636 §4.2: BASE64URL(SHA-256(verifier)) without padding.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


class _S256CodeGrant(AuthorizationCodeGrant):
    # RFC 9700 §2.1.1: "plain" PKCE protects nothing once the authorization
    # request leaks, so only S256 is offered.
    _code_challenge_methods = {"S256": code_challenge_method_s256}

    def validate_authorization_request(
        self, request: Request
    ) -> tuple[list[str], dict[str, Any]]:
        scopes, info = super().validate_authorization_request(request)

        # Refused here rather than stored: no verifier could match it, and
        # a database with a length limit would fail on it.
        challenge = request.code_challenge
        if challenge is not None and not _S256_CHALLENGE.fullmatch(challenge):
            raise InvalidRequestError(
                description="code_challenge must be an S256 challenge "
                "(43 base64url characters)",
                request=request,
            )

        return scopes, info


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
