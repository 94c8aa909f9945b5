"""The gateway: oauth-tai in front of APIs that are not Python.

Two modes, one judgement: :class:`TrustAssociationMiddleware` with its
policy, cache and validator decides every request, as it does in front of
a WSGI app.

* :class:`DecisionApp` answers nginx ``auth_request`` and Traefik
  ForwardAuth at ``/auth``; the proxy in front forwards the request
  itself, with the identity headers copied from the answer.
* :func:`protect_upstream` is a reverse proxy that forwards what the
  middleware lets through to one upstream URL, adding the identity
  headers.

Either way the upstream learns the identity from ``X-Auth-User``,
``X-Auth-Consumer``, ``X-Auth-Consumer-Name`` and ``X-Auth-Scope`` (names
set by :class:`IdentityHeaders`), and a client's own copies of those
headers are removed. Values are percent-encoded UTF-8 when they hold
anything but printable ASCII without ``%``.
"""

from oauth_tai.gateway.decision import DecisionApp
from oauth_tai.gateway.proxy import CanonicalRequest, ReverseProxy, protect_upstream
from oauth_tai.gateway.wire import IdentityHeaders

__all__ = [
    "CanonicalRequest",
    "DecisionApp",
    "IdentityHeaders",
    "ReverseProxy",
    "protect_upstream",
]
