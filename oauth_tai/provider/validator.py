"""The provider's rules, as oauthlib asks for them.

oauthlib runs the protocol (parameter checks, PKCE, error responses); this
class answers its questions from the consumer registry and the token store.
Each answer that ends a request returns ``False`` and leaves the response
to oauthlib, so every refusal has the RFC 6749 error code and status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from oauthlib.common import Request
from oauthlib.oauth2 import RequestValidator

from oauth_tai.audit import BY_CONSUMER, BY_PROVIDER, audit
from oauth_tai.cache import LOG_HASH_CHARS
from oauth_tai.provider.basic import parse_basic
from oauth_tai.provider.hashing import token_hash
from oauth_tai.provider.registry import ClientRegistry
from oauth_tai.provider.store import TokenStore

logger = logging.getLogger(__name__)

# Connections grants a consumer all of the user's data, so there is one
# scope, and it is what a consumer gets when it asks for none.
DEFAULT_SCOPE = "connections"
SCOPES = frozenset({DEFAULT_SCOPE})
GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})


class ProviderValidator(RequestValidator):
    """Answer oauthlib from the registry and the store.

    :param token_label: the short hash that names a token in the audit
        trail; the middleware's keyed hash where a cache is at hand, so
        that both name a token alike.
    """

    def __init__(
        self,
        registry: ClientRegistry,
        store: TokenStore,
        endpoint_path: str,
        token_label: Callable[[str], str] | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.endpoint_path = endpoint_path
        self.token_label = token_label or _short_hash

    # -- consumers ----------------------------------------------------------

    def client_authentication_required(
        self, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        return True

    def authenticate_client(self, request: Request, *args: Any, **kwargs: Any) -> bool:
        credentials = client_credentials(request)
        if credentials is None:
            return False

        client_id, secret = credentials
        consumer = self.registry.authenticate(client_id, secret)
        if consumer is None:
            logger.info("consumer authentication failed for %r", client_id)
            return False

        request.client = consumer
        request.client_id = consumer.client_id
        return True

    def authenticate_client_id(
        self, client_id: str, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        return False

    def validate_client_id(
        self, client_id: str, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        consumer = self.registry.find(client_id)
        if consumer is None or not consumer.enabled:
            return False

        request.client = consumer
        return True

    def validate_redirect_uri(
        self, client_id: str, redirect_uri: str, request: Request, *a: Any, **k: Any
    ) -> bool:
        consumer = self.registry.find(client_id)
        # RFC 6749 §3.1.2.3 and the OAuth security BCP: exact string match.
        return consumer is not None and redirect_uri == consumer.redirect_uri

    def get_default_redirect_uri(
        self, client_id: str, request: Request, *args: Any, **kwargs: Any
    ) -> str:
        consumer = self.registry.find(client_id)
        return "" if consumer is None else consumer.redirect_uri

    def validate_response_type(
        self,
        client_id: str,
        response_type: str,
        client: Any,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        return response_type == "code"

    def validate_grant_type(
        self,
        client_id: str,
        grant_type: str,
        client: Any,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        return grant_type in GRANT_TYPES

    def validate_scopes(
        self,
        client_id: str,
        scopes: list[str],
        client: Any,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        return set(scopes) <= SCOPES

    def get_default_scopes(
        self, client_id: str, request: Request, *args: Any, **kwargs: Any
    ) -> list[str]:
        return [DEFAULT_SCOPE]

    # -- authorization codes -----------------------------------------------

    def is_pkce_required(self, client_id: str, request: Request) -> bool:
        return False

    def save_authorization_code(
        self,
        client_id: str,
        code: Any,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.store.save_code(
            code["code"],
            grant_id=_grant_id(request),
            client_id=client_id,
            redirect_uri=request.redirect_uri
            or self.get_default_redirect_uri(client_id, request),
            challenge=request.code_challenge,
            challenge_method=request.code_challenge_method,
        )

    def validate_code(
        self,
        client_id: str,
        code: str,
        client: Any,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        record = self.store.find_code(code)
        short = token_hash(code)[:LOG_HASH_CHARS]
        # A code of another consumer is refused without being used up, so
        # a consumer cannot destroy codes that are not its own.
        if record is None or record.client_id != client_id:
            logger.info("code %s refused for %s: unknown here", short, client_id)
            return False

        if record.used_at is not None:
            logger.warning("code %s replayed: revoking what it issued", short)
            self.store.revoke_issued_from_code(code)
            audit(
                "grant_revoked",
                by=BY_PROVIDER,
                user=record.username,
                consumer=client_id,
                reason="code_replayed",
            )
            return False

        if not _verifier_matches(record.challenge, request.code_verifier):
            logger.info("code %s refused: PKCE verifier does not match", short)
            return False

        if request.redirect_uri not in (None, record.redirect_uri):
            return False

        if not self.store.claim_code(code):
            # Expired, or another request claimed it a moment ago.
            self.store.revoke_issued_from_code(code)
            return False

        request.user = record.username
        request.scopes = record.scope.split()
        vars(request).update(grant_id=record.grant_id, code_record=record)
        return True

    def confirm_redirect_uri(
        self,
        client_id: str,
        code: str,
        redirect_uri: str,
        client: Any,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        record = getattr(request, "code_record", None)
        return record is not None and redirect_uri == record.redirect_uri

    def get_code_challenge(self, code: str, request: Request) -> str:
        record = getattr(request, "code_record", None)
        return None if record is None else record.challenge  # type: ignore[return-value]

    def get_code_challenge_method(self, code: str, request: Request) -> str:
        record = getattr(request, "code_record", None)
        return None if record is None else record.challenge_method  # type: ignore[return-value]

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Request, *args: Any, **kwargs: Any
    ) -> None:
        # validate_code already claimed the code atomically.
        return None

    # -- tokens --------------------------------------------------------------

    def save_bearer_token(
        self, token: Any, request: Request, *args: Any, **kwargs: Any
    ) -> str:
        from_code = request.grant_type == "authorization_code"
        self.store.issue(
            grant_id=_grant_id(request),
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            expires_in=int(token["expires_in"]),
            code=request.code if from_code else None,
        )
        audit(
            "token_issued" if from_code else "token_refreshed",
            by=BY_CONSUMER,
            user=request.user,
            consumer=request.client_id,
            token=self.token_label(token["access_token"]),
            grant=_grant_id(request),
        )
        return request.redirect_uri or ""

    def validate_refresh_token(
        self,
        refresh_token: str,
        client: Any,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        record = self.store.find_refresh(refresh_token)
        if record is None or record.client_id != request.client_id:
            return False

        if record.retired and record.active is False:
            # RFC 9700 §4.14.2: a retired refresh token used again means it
            # was copied; end the grant so neither copy works.
            logger.warning(
                "retired refresh token reused by %s: revoking its grant",
                record.client_id,
            )
            self.store.revoke_grant(record.grant_id)
            audit(
                "grant_revoked",
                by=BY_PROVIDER,
                user=record.username,
                consumer=record.client_id,
                grant=record.grant_id,
                reason="refresh_token_reused",
            )
            return False

        if not record.active:
            return False

        requested = set((request.scope or "").split())
        if not requested <= set(record.scope.split()):
            return False

        if not self.store.retire_refresh(refresh_token):
            return False

        request.user = record.username
        vars(request)["grant_id"] = record.grant_id
        return True

    def get_original_scopes(
        self, refresh_token: str, request: Request, *args: Any, **kwargs: Any
    ) -> list[str]:
        record = self.store.find_refresh(refresh_token)
        return [] if record is None else record.scope.split()

    def rotate_refresh_token(self, request: Request) -> bool:
        return True

    def revoke_token(
        self,
        token: str,
        token_type_hint: str | None,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        user = self.store.revoke_token(token, str(request.client_id))
        if user is not None:
            audit(
                "token_revoked",
                by=BY_CONSUMER,
                user=user,
                consumer=str(request.client_id),
                token=self.token_label(token),
            )

    def introspect_token(
        self,
        token: str,
        token_type_hint: str | None,
        request: Request,
        *args: Any,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        claims = self.store.introspect(token)
        if claims is not None:
            # The request URI carries the public base the app resolved.
            base = urlsplit(request.uri)
            claims["iss"] = f"{base.scheme}://{base.netloc}{self.endpoint_path}"
        return claims


def _short_hash(token: str) -> str:
    return token_hash(token)[:LOG_HASH_CHARS]


def _grant_id(request: Request) -> int:
    # Set on the request by the consent handler (as a credential) or by
    # validate_code and validate_refresh_token.
    return int(vars(request)["grant_id"])


def client_credentials(request: Request) -> tuple[str, str] | None:
    """Return the consumer id and secret sent with a request, if well-formed.

    RFC 6749 §2.3.1: HTTP Basic with form-encoded id and secret, or the
    ``client_id`` and ``client_secret`` body fields, but never both.
    """
    header = request.headers.get("Authorization", "")
    in_body = request.client_secret is not None
    if not header:
        if not in_body or not request.client_id:
            return None
        return str(request.client_id), str(request.client_secret)

    if in_body:
        return None

    pair = parse_basic(header)
    if pair is None:
        return None

    # RFC 6749 §2.3.1: both halves are form-urlencoded before Basic.
    client_id, secret = (unquote(half.replace("+", " ")) for half in pair)
    if request.client_id not in (None, client_id):
        return None

    return client_id, secret


def _verifier_matches(challenge: str | None, verifier: str | None) -> bool:
    # RFC 7636 §4.6 with S256 only; a verifier sent for a code issued
    # without a challenge is refused rather than ignored.
    if challenge is None:
        return verifier is None
    if verifier is None:
        return False

    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return hmac.compare_digest(expected, challenge)
