"""What the gateway's two modes say and strip on the wire.

The identity headers it sends to the upstream, the headers that end at
this hop, the canonical form of a request path, and its JSON errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from oauth_tai.errors import ConfigurationError
from oauth_tai.identity import IDENTITY_HEADERS, Identity
from oauth_tai.settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

# RFC 9110 §5.1 allows more in a field name, but a name with "_" is dropped
# or merged with its "-" twin by many servers, so it could not be stripped
# reliably from a client's request.
_HEADER_NAME = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")

# Printable ASCII but "%": a user or consumer name passes unchanged unless
# it holds "%", a control character (CR and LF would split the header) or
# a non-ASCII one, which are percent-encoded as UTF-8.
_VALUE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")

# RFC 9110 §7.6.1 and the list of RFC 2616 §13.5.1; Proxy-Authorization,
# Proxy-Authenticate and every other Proxy-* header end here too.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True, slots=True)
class IdentityHeaders:
    """The names of the headers that carry an identity to the upstream.

    Raises :class:`ConfigurationError` for a name that is not letters,
    digits and single hyphens.

    ::

        IdentityHeaders(user="X-Remote-User")
    """

    user: str = IDENTITY_HEADERS[0]
    consumer: str = IDENTITY_HEADERS[1]
    consumer_name: str = IDENTITY_HEADERS[2]
    scope: str = IDENTITY_HEADERS[3]

    def __post_init__(self) -> None:
        for name in self.names:
            if not _HEADER_NAME.fullmatch(name):
                raise ConfigurationError(f"{name!r} is not a usable header name")

        if len({name.lower() for name in self.names}) < len(self.names):
            raise ConfigurationError("the gateway's identity headers must differ")

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityHeaders:
        return cls(
            settings.gateway_user_header,
            settings.gateway_consumer_header,
            settings.gateway_consumer_name_header,
            settings.gateway_scope_header,
        )

    @property
    def names(self) -> tuple[str, ...]:
        return (self.user, self.consumer, self.consumer_name, self.scope)

    @property
    def stripped(self) -> tuple[str, ...]:
        """The names removed from every client request: ours and the defaults."""
        return tuple(dict.fromkeys((*self.names, *IDENTITY_HEADERS)))

    def render(self, identity: Identity) -> list[tuple[str, str]]:
        """Return the headers for ``identity``; one without a value is left out."""
        values = (
            identity.user,
            identity.consumer_id,
            identity.consumer_name,
            " ".join(sorted(identity.scopes)),
        )
        return [
            (name, quote(value, safe=_VALUE_SAFE))
            for name, value in zip(self.names, values, strict=True)
            if value
        ]


def ends_here(connection: str | None) -> frozenset[str]:
    """Return the lower-case names of the headers that end at this hop.

    :param connection: the message's Connection header, whose options name
        more such headers (RFC 9110 §7.6.1).
    """
    named = {option.strip().lower() for option in (connection or "").split(",")}
    return HOP_BY_HOP | (named - {""})


def is_hop_by_hop(name: str, ending: Iterable[str]) -> bool:
    lowered = name.lower()
    return lowered in ending or lowered.startswith("proxy-")


_AMBIGUOUS = re.compile(r"[\\\x00-\x1f\x7f]")


def canonical_path(path: str, *, keep_parameters: bool = False) -> str | None:
    """Return a decoded path as the strictest upstream reads it.

    The policy must match the path the upstream will serve: an upstream
    that resolves ``/public/../api/`` itself would otherwise serve
    ``/api/`` to a request the policy saw as public. Tomcat, Jetty and
    Spring also drop each segment's ``;parameters`` before they resolve
    dot segments, so ``/api;x/reports`` is judged as ``/api/reports``.
    Paths are compared as they are, case and all.

    Returns ``None`` for a path that does not start with ``/``, that holds
    a backslash or a control character (some servers read ``\\`` as
    ``/`` or stop at NUL, and no policy can guess which), that has ``..``
    after doubled slashes, or whose parameters upstreams disagree about
    (see :func:`_read_alike`).

    :param keep_parameters: keep the parameters in the path returned: the
        form forwarded upstream, whose reading the policy judged.
    """
    if not path.startswith("/") or _AMBIGUOUS.search(path):
        return None

    sent = path.split("/")[1:]
    names = [segment.partition(";")[0] for segment in sent]
    if ";" in path and not _read_alike(sent, names):
        return None
    if ".." in names and "" in names[:-1]:
        # A server that merges "//" resolves a later ".." against the
        # segment before the slashes, one that does not against the empty
        # segment between them: two resources, neither reading judgeable.
        empty = names.index("")
        if ".." in names[empty + 1 :]:
            return None

    kept = sent if keep_parameters else names
    segments: list[str] = []
    for name, segment in zip(names, kept, strict=True):
        if name == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)

    canonical = "/" + "/".join(segments)
    if segments and kept[-1] in ("", ".", ".."):
        canonical += "/"
    return canonical


def _read_alike(sent: list[str], names: list[str]) -> bool:
    """Tell whether every upstream reads a path with parameters the same way.

    Java servers strip ``;parameters`` first, so ``..;`` is a step up and
    ``;x`` an empty segment there; elsewhere (RFC 3986 §3.3 leaves
    parameters to the application) they are ordinary names. With a dot
    segment or a segment of parameters alone (but the last, where
    ``;jsessionid=`` may follow a slash) the two readings name different
    resources, and judging either would let the other through. Clients
    remove dot segments before sending (RFC 3986 §5.2.4), so only a
    crafted request is refused.
    """
    if any(name in (".", "..") for name in names):
        return False

    return all(
        name or not segment for name, segment in zip(names[:-1], sent[:-1], strict=True)
    )


REASONS = {
    400: "Bad Request",
    404: "Not Found",
    502: "Bad Gateway",
}


def respond_json(
    start_response: StartResponse,
    status: int,
    error: str,
    description: str,
) -> list[bytes]:
    """Answer with an OAuth-style JSON error of the gateway's own."""
    body: dict[str, Any] = {"error": error, "error_description": description}
    payload = json.dumps(body).encode()
    start_response(
        f"{status} {REASONS[status]}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [payload]
