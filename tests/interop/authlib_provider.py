"""An authorization server that is not oauth-tai: Authlib's, on loopback.

It issues RFC 9068 JWT access tokens with Authlib's own generator (the
password grant at ``/token``), publishes its signing keys at ``/jwks`` and
answers RFC 7662 introspection at ``/introspect`` with Authlib's JWT
introspection endpoint. Tests also reach into it: to sign claims of their
choosing with its keys (through joserfc, the JOSE library Authlib signs
with), to rotate its keys, to count the JWKS requests it served, and to
stop it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import requests
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.grants import ResourceOwnerPasswordCredentialsGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator, JWTIntrospectionEndpoint
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

CONSUMER_ID = "photo-app"
CONSUMER_NAME = "Photo App"
CONSUMER_SECRET = "photo-app-secret"
RESOURCE_SERVER_ID = "files-api"
RESOURCE_SERVER_SECRET = "files-api-secret"
USER_ID = "u-1001"
USERNAME = "alice"
PASSWORD = "alice-password"
SCOPES = "files.read files.write"

Key = RSAKey | ECKey | OKPKey


class Client(ClientMixin):
    """A consumer or resource server registered at the Authlib provider."""

    def __init__(
        self,
        client_id: str,
        secret: str,
        name: str,
        *,
        auth_method: str = "client_secret_basic",
        public_key: str = "",
    ) -> None:
        self.client_id = client_id
        self.secret = secret
        self.name = name
        self.auth_method = auth_method
        self.public_key = public_key

    def get_client_id(self) -> str:
        return self.client_id

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(SCOPES.split())
        return " ".join(s for s in (scope or SCOPES).split() if s in allowed)

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "password" and self.client_id == CONSUMER_ID


class User:
    def __init__(self, user_id: str, username: str, password: str) -> None:
        self.user_id = user_id
        self.username = username
        self.password = password

    def get_user_id(self) -> str:
        return self.user_id


class _Payload(OAuth2Payload):
    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def data(self) -> Any:
        return self._request.form

    @cached_property
    def datalist(self) -> defaultdict[str, list[str]]:
        values: defaultdict[str, list[str]] = defaultdict(list)
        for name in self._request.form:
            values[name].extend(self._request.form.getlist(name))
        return values


class _Request(OAuth2Request):
    """Authlib's view of a werkzeug request."""

    def __init__(self, request: Request) -> None:
        super().__init__(request.method, request.url, headers=request.headers)
        self._request = request
        self.payload = _Payload(request)

    @property
    def args(self) -> Any:
        return self._request.args

    @property
    def form(self) -> Any:
        return self._request.form


class AuthlibProvider:
    """Authlib's authorization server, served by werkzeug on 127.0.0.1.

    :param audience: the ``aud`` of the access tokens it issues.
    """

    def __init__(self, audience: str = RESOURCE_SERVER_ID) -> None:
        self.audience = audience
        self.clients = {
            CONSUMER_ID: Client(CONSUMER_ID, CONSUMER_SECRET, CONSUMER_NAME),
            RESOURCE_SERVER_ID: Client(
                RESOURCE_SERVER_ID, RESOURCE_SERVER_SECRET, "Files API"
            ),
        }
        self.users = {USERNAME: User(USER_ID, USERNAME, PASSWORD)}
        self.signing_key: Key = RSAKey.generate_key(2048, parameters=_kid())
        self.published: list[Key] = [self.signing_key]
        self.jwks_requests = 0
        self.assertion_ids: set[str] = set()
        self.jwks_status = 200
        self._stopped = False
        self._lock = threading.Lock()
        self._httpd = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._httpd.server_port}"
        self.jwks_url = self.issuer + "/jwks"
        self.introspection_url = self.issuer + "/introspect"
        self._server = self._authorization_server()
        # A short poll keeps stop() quick; it is only how often shutdown is seen.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the listening socket; again does nothing."""
        if self._stopped:
            return

        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    # What a consumer does: ask the token endpoint for an access token.

    def issue_token(self, scope: str = SCOPES) -> str:
        """Return an access token from the password grant (RFC 6749 §4.3)."""
        response = requests.post(
            self.issuer + "/token",
            data={
                "grant_type": "password",
                "username": USERNAME,
                "password": PASSWORD,
                "scope": scope,
            },
            auth=(CONSUMER_ID, CONSUMER_SECRET),
            timeout=5,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    # What only a test does: sign claims of its choosing, rotate keys.

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Return a valid RFC 9068 claim set; a change to ``None`` drops it."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": USER_ID,
            "username": USERNAME,
            "client_id": CONSUMER_ID,
            "client_name": CONSUMER_NAME,
            "scope": SCOPES,
            "iat": now,
            "exp": now + 600,
            "jti": secrets.token_hex(8),
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def header(self, key: Key | None = None, **changes: Any) -> dict[str, Any]:
        """Return the JOSE header the provider signs with; ``None`` drops one."""
        key = key or self.signing_key
        header: dict[str, Any] = {"alg": _alg(key), "typ": "at+jwt", "kid": key.kid}
        header.update(changes)
        return {name: value for name, value in header.items() if value is not None}

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        key: Key | None = None,
    ) -> str:
        """Sign ``claims`` (default: a valid set) with joserfc, as Authlib does."""
        key = key or self.signing_key
        token: str = jwt.encode(
            header or self.header(key),
            claims or self.claims(),
            key,
            algorithms=[header["alg"] if header else _alg(key)],
        )
        return token

    def new_key(self, kty: str = "RSA", *, publish: bool) -> Key:
        """Make a signing key, published in the JWKS or not."""
        key: Key
        if kty == "RSA":
            key = RSAKey.generate_key(2048, parameters=_kid())
        elif kty == "EC":
            key = ECKey.generate_key("P-256", parameters=_kid())
        else:
            key = OKPKey.generate_key("Ed25519", parameters=_kid())

        if publish:
            with self._lock:
                self.published = [*self.published, key]
        return key

    def withdraw(self, key: Key) -> None:
        """Take a key out of the JWKS."""
        with self._lock:
            self.published = [k for k in self.published if k.kid != key.kid]

    def rotate(self) -> Key:
        """Publish a new RSA key and sign new tokens with it."""
        self.signing_key = self.new_key(publish=True)
        return self.signing_key

    def public_pem(self) -> bytes:
        """The signing key's public half as PEM, as some clients keep it."""
        pem: bytes = self.signing_key.as_pem(private=False)
        return pem

    def private_key(self) -> Any:
        """The signing key as a cryptography object, for hand-made tokens."""
        return serialization.load_pem_private_key(
            self.signing_key.as_pem(private=True), password=None
        )

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            published = list(self.published)
        return KeySet(published).as_dict(private=False)

    # The server.

    def _authorization_server(self) -> AuthorizationServer:
        provider = self

        class Server(AuthorizationServer):
            def query_client(self, client_id: str) -> Client | None:
                return provider.clients.get(client_id)

            def save_token(self, token: dict[str, Any], request: Any) -> None:
                # JWT access tokens are self-contained: nothing to store.
                pass

            def create_oauth2_request(self, request: Request | _Request) -> _Request:
                # Authlib passes the converted request back in when it tries
                # the next introspection endpoint.
                if isinstance(request, _Request):
                    return request
                return _Request(request)

            def handle_response(
                self, status: int, body: Any, headers: list[tuple[str, str]]
            ) -> Response:
                data = json.dumps(body) if isinstance(body, dict) else body
                return Response(data, status=status, headers=headers)

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                pass

        class PasswordGrant(ResourceOwnerPasswordCredentialsGrant):
            def authenticate_user(self, username: str, password: str) -> User | None:
                user = provider.users.get(username)
                if user is None or not secrets.compare_digest(password, user.password):
                    return None
                return user

        class Generator(JWTBearerTokenGenerator):
            def get_jwks(self) -> KeySet:
                return KeySet([provider.signing_key])

            def get_audiences(self, client: Client, user: Any, scope: str) -> str:
                return provider.audience

            def get_extra_claims(
                self, client: Client, grant_type: str, user: User | None, scope: str
            ) -> dict[str, Any]:
                extra = {"client_name": client.name}
                if user is not None:
                    extra["username"] = user.username
                return extra

        class KeyAssertion(JWTBearerClientAssertion):
            # RFC 7523 §2.2 as OpenID names it: the resource server signs a
            # short JWT with its own key instead of sending a secret.
            CLIENT_AUTH_METHOD = "private_key_jwt"

            def get_audiences(self) -> list[str]:
                return [provider.introspection_url]

            def validate_jti(self, claims: Any, jti: str) -> bool:
                if jti in provider.assertion_ids:
                    return False
                provider.assertion_ids.add(jti)
                return True

            def resolve_client_public_key(self, client: Client) -> str:
                return client.public_key

        auth_methods = ["client_secret_basic", "private_key_jwt"]

        class JwtIntrospection(JWTIntrospectionEndpoint):
            CLIENT_AUTH_METHODS = auth_methods

            def get_jwks(self) -> KeySet:
                return KeySet.import_key_set(provider.jwks())

            def check_permission(
                self, token: Any, client: Client, request: Any
            ) -> bool:
                return bool(client.client_id == RESOURCE_SERVER_ID)

            def get_username(self, user_id: str) -> str | None:
                for user in provider.users.values():
                    if user.user_id == user_id:
                        return user.username
                return None

        class OtherTokens(IntrospectionEndpoint):
            CLIENT_AUTH_METHODS = auth_methods

            # Tokens that are not this provider's valid JWTs land here.
            def query_token(self, token: str, hint: str | None) -> None:
                return None

            def check_permission(
                self, token: Any, client: Client, request: Any
            ) -> bool:
                return bool(client.client_id == RESOURCE_SERVER_ID)

        server = Server()
        server.register_client_auth_method("private_key_jwt", KeyAssertion())
        server.register_grant(PasswordGrant)
        server.register_token_generator(
            "default", Generator(issuer=self.issuer, alg="RS256")
        )
        server.register_endpoint(JwtIntrospection(issuer=self.issuer))
        server.register_endpoint(OtherTokens)
        return server

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response: Response
        if request.path == "/jwks" and request.method == "GET":
            with self._lock:
                self.jwks_requests += 1
            response = Response(
                json.dumps(self.jwks()),
                status=self.jwks_status,
                content_type="application/json",
            )
        elif request.path == "/token" and request.method == "POST":
            response = self._server.create_token_response(request)
        elif request.path == "/introspect" and request.method == "POST":
            response = self._server.create_endpoint_response("introspection", request)
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)


@contextmanager
def running_provider(audience: str = RESOURCE_SERVER_ID) -> Iterator[AuthlibProvider]:
    """Start an Authlib provider on loopback; stop it afterwards."""
    provider = AuthlibProvider(audience)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


def _kid() -> dict[str, str]:
    return {"kid": secrets.token_hex(6), "use": "sig"}


def _alg(key: Key) -> str:
    if isinstance(key, ECKey):
        return "ES256"
    if isinstance(key, OKPKey):
        return "EdDSA"
    return "RS256"
