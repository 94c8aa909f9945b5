"""Asking a remote provider about a token over RFC 7662 introspection."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode

import urllib3

from oauth_tai.errors import ConfigurationError, ProviderUnavailable
from oauth_tai.metrics import INTROSPECTION_ERRORS, INTROSPECTION_SECONDS
from oauth_tai.validators.client_auth import ClientAuth

logger = logging.getLogger(__name__)

# A pooled connection per worker thread is enough; more only holds sockets
# open on the provider.
POOL_SIZE: Final = 10


class IntrospectionClient:
    """Call an RFC 7662 endpoint with the resource server's credentials.

    :param url: the provider's introspection endpoint.
    :param client_id: this resource server's consumer id at the provider.
    :param client_secret: its secret.
    :param timeout: connect and read timeout, in seconds.
    :param auth: how to authenticate, when not HTTP Basic with the secret
        (see :mod:`oauth_tai.validators.client_auth`).
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str = "",
        timeout: float = 2.0,
        *,
        auth: ClientAuth | None = None,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("the introspection URL must be http(s)")
        if auth is None:
            auth = ClientAuth(
                "client_secret_basic", client_id, client_secret=client_secret
            )

        self.url = url
        self.client_id = client_id
        self.auth = auth
        self._headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        header = auth.header()
        if header is not None:
            self._headers["Authorization"] = header
        self._pool = urllib3.PoolManager(
            maxsize=POOL_SIZE,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
        )

    def __repr__(self) -> str:
        return f"IntrospectionClient({self.url!r}, client_id={self.client_id!r})"

    def introspect(self, token: str) -> Mapping[str, Any] | None:
        """Return the active answer for ``token``, or ``None`` if inactive.

        Raises :class:`ProviderUnavailable` when the provider cannot be
        reached, answers 5xx or something that is not JSON, or refuses our
        credentials.
        """
        fields = {"token": token, "token_type_hint": "access_token"}
        body = urlencode({**fields, **self.auth.fields()})
        try:
            with INTROSPECTION_SECONDS.time():
                response = self._pool.request(
                    "POST", self.url, body=body, headers=self._headers
                )
        except urllib3.exceptions.HTTPError as exc:
            INTROSPECTION_ERRORS.inc()
            raise ProviderUnavailable(
                f"introspection failed: {type(exc).__name__}"
            ) from exc

        if response.status != 200:
            # 401 means our own credentials are wrong: every token would look
            # inactive, so it is an outage, not an answer.
            INTROSPECTION_ERRORS.inc()
            raise ProviderUnavailable(f"introspection answered {response.status}")

        try:
            answer = json.loads(response.data)
        except ValueError as exc:
            # A 200 that is not JSON is a broken provider or proxy, not an
            # answer: taking it for "inactive" would cache it as one.
            INTROSPECTION_ERRORS.inc()
            raise ProviderUnavailable("the introspection answer is not JSON") from exc

        if not isinstance(answer, dict) or answer.get("active") is not True:
            return None

        return answer
