"""How a resource server proves who it is to the provider's endpoints.

Three methods, named as RFC 8414 names them: ``client_secret_basic`` and
``client_secret_post`` (RFC 6749 §2.3.1), and ``private_key_jwt`` (RFC 7523
§2.2 with OpenID Connect Core §9: a short-lived JWT signed with a key whose
public half the provider holds, so no shared secret travels at all).
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Final
from urllib.parse import quote

import jwt

from oauth_tai.errors import ConfigurationError

METHODS: Final = ("client_secret_basic", "client_secret_post", "private_key_jwt")
ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Long enough for a slow network, short enough that a copied assertion
# is of little use; each also carries a fresh jti.
ASSERTION_SECONDS: Final = 60


class ClientAuth:
    """Credentials to add to each request, by one of :data:`METHODS`.

    :param method: the authentication method.
    :param client_id: the resource server's consumer id at the provider.
    :param client_secret: its secret, for the two secret methods.
    :param private_key: a PEM private key (RSA or EC), for private_key_jwt.
    :param key_id: the ``kid`` the provider knows that key by, if any.
    :param audience: the endpoint the assertions are for.
    """

    def __init__(
        self,
        method: str,
        client_id: str,
        *,
        client_secret: str = "",
        private_key: str = "",
        key_id: str = "",
        audience: str = "",
    ) -> None:
        if method not in METHODS:
            raise ConfigurationError(
                f"client authentication must be one of {', '.join(METHODS)}"
            )
        if not client_id:
            raise ConfigurationError("client authentication needs a client id")
        if method == "private_key_jwt" and not private_key:
            raise ConfigurationError("private_key_jwt needs a private key")
        if method != "private_key_jwt" and not client_secret:
            raise ConfigurationError(f"{method} needs a client secret")

        self.method = method
        self.client_id = client_id
        self._secret = client_secret
        self._key = private_key
        self._headers = {"kid": key_id} if key_id else None
        self._audience = audience
        self._algorithm = "ES256" if "EC PRIVATE" in private_key else "RS256"
        if method == "private_key_jwt":
            # Sign once now, so a key that cannot sign fails at start.
            self.fields()

    def __repr__(self) -> str:
        return f"ClientAuth({self.method!r}, client_id={self.client_id!r})"

    def header(self) -> str | None:
        """Return the ``Authorization`` value to send, if the method uses one."""
        if self.method != "client_secret_basic":
            return None

        # RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
        pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def fields(self) -> dict[str, str]:
        """Return the form fields to add to one request."""
        if self.method == "client_secret_basic":
            return {}
        if self.method == "client_secret_post":
            return {"client_id": self.client_id, "client_secret": self._secret}

        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self._audience,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + ASSERTION_SECONDS,
        }
        try:
            assertion = jwt.encode(
                claims, self._key, algorithm=self._algorithm, headers=self._headers
            )
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise ConfigurationError("the private key cannot sign") from exc

        return {
            "client_id": self.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
