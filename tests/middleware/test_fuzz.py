"""Fuzzing what a client controls: the Authorization header, query and body.

Whatever arrives, the middleware in front of an echo app, with the
provider's real token store behind it, answers 200, 400, 401 or 403, never
raises, and refuses only with one of its fixed refusals: nothing a client
sends is echoed back in a refusal.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from oauth_tai.cache import TokenCache
from oauth_tai.identity import get_identity
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.rules import InterceptPolicy, InterceptRule
from oauth_tai.system import Provider

REALM = "fuzz realm"
CLIENT_ID = "notes-app"
USER = "alice"
# A fixed token, so that the strategies can draw it; the store issues it.
GOOD = "Fuzz-Good_Token.0123456789~+/="

POLICY = InterceptPolicy(
    [
        InterceptRule("/api/admin/", scopes=frozenset({"admin"})),
        InterceptRule("/api/"),
        InterceptRule("/pages/", oauth_only=False),
    ]
)
PATHS = ("/api/me", "/api/admin/users", "/pages/home", "/public")

# RFC 9110 §5.6.2 (token) and §5.6.4 (quoted-string, no control characters).
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CHALLENGE = re.compile(
    r'Bearer realm="fuzz realm"'
    r'(, (error|error_description|scope)="([^"\\\x00-\x1f\x7f]|\\["\\])*")*'
)


@dataclass
class Echo:
    """A WSGI app that answers with the user of the identity it was given."""

    users: list[str | None] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        identity = get_identity(environ)
        user = identity.user if identity is not None else None
        self.users.append(user)
        body = json.dumps({"user": user}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


@dataclass(frozen=True)
class Sent:
    """What a client put in one request."""

    path: str
    method: str
    authorization: str | None
    query: str
    content_type: str
    body: bytes
    content_length: str | None


@dataclass
class Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def code(self) -> int:
        return int(self.status[:3])

    def refusal(self) -> tuple[str, bytes, str | None]:
        """What makes this refusal what it is: status, body and challenge."""
        return self.status, self.body, self.header("WWW-Authenticate")

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def text(self) -> str:
        return self.body.decode("latin-1") + "".join(v for _, v in self.headers)


def call(app: TrustAssociationMiddleware, sent: Sent) -> Answer:
    """Call the middleware with the environ a WSGI server would build."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": sent.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": sent.path,
        "QUERY_STRING": sent.query,
        "CONTENT_TYPE": sent.content_type,
        "CONTENT_LENGTH": (
            str(len(sent.body)) if sent.content_length is None else sent.content_length
        ),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(sent.body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if sent.authorization is not None:
        environ["HTTP_AUTHORIZATION"] = sent.authorization

    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
        started.append((status, headers))
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()

    assert len(started) == 1
    return Answer(started[0][0], started[0][1], body)


@dataclass
class Deployment:
    app: TrustAssociationMiddleware
    echo: Echo
    refusals: set[tuple[str, bytes, str | None]]


def plain(path: str, authorization: str | None = None, query: str = "") -> Sent:
    return Sent(path, "GET", authorization, query, "", b"", None)


@pytest.fixture
def deployment(provider: Provider) -> Deployment:
    """The middleware over the real store, and every refusal it can make."""
    provider.registry.add(CLIENT_ID, "Notes App", "http://127.0.0.1:9/cb")
    grant = provider.store.consent(USER, CLIENT_ID, "connections")
    provider.store.issue(grant, GOOD, None, 3600)
    echo = Echo()
    app = TrustAssociationMiddleware(
        echo,
        provider.store,
        TokenCache(secrets.token_bytes(32)),
        realm=REALM,
        policy=POLICY,
        allow_body_token=True,
        allow_query_token=True,
    )

    unknown = secrets.token_urlsafe(32)
    canonical = {
        plain("/api/me"): 401,
        plain("/api/me", "Bearer a b"): 400,
        plain("/api/me", "Bearer abc", "access_token=def"): 400,
        plain("/api/me", None, "access_token=a+b"): 400,
        plain("/api/me", f"Bearer {unknown}"): 401,
        plain("/api/admin/users", f"Bearer {GOOD}"): 403,
    }
    refusals = set()
    for sent, code in canonical.items():
        answer = call(app, sent)
        assert answer.code == code, (sent, answer)
        assert unknown not in answer.text()
        refusals.add(answer.refusal())

    assert call(app, plain("/api/me", f"Bearer {GOOD}")).code == 200
    return Deployment(app, echo, refusals)


# WSGI hands over header values and the query string as latin-1 strings.
latin1 = st.text(st.characters(max_codepoint=255), max_size=60)
token68 = st.from_regex(r"[A-Za-z0-9\-._~+/]+=*", fullmatch=True)

# Near misses of the good token: a wrong yes would most likely be one.
near_good = st.one_of(
    st.integers(1, len(GOOD) - 1).map(lambda end: GOOD[:end]),
    token68.map(lambda extra: GOOD.rstrip("=") + extra),
    st.sampled_from([GOOD.lower(), GOOD.upper(), GOOD.swapcase(), GOOD[::-1]]),
    st.builds(
        lambda at, char: GOOD[:at] + char + GOOD[at + 1 :],
        st.integers(0, len(GOOD) - 1),
        st.sampled_from("AaZz09-._~+/="),
    ),
)
credential = st.one_of(st.just(GOOD), near_good, token68, latin1)
encoded = credential.flatmap(lambda c: st.sampled_from([c, quote(c, safe="")]))

bearer_header = st.one_of(
    st.just(f"Bearer {GOOD}"),
    st.builds(
        lambda scheme, gap, value, tail: scheme + gap + value + tail,
        st.sampled_from(["Bearer", "bearer", "BEARER", " Bearer", "Basic", "Bearer,"]),
        st.sampled_from([" ", " ", "  ", "\t", ""]),
        credential,
        st.sampled_from(["", "", " ", "\t", ",", " x", "\r\n"]),
    ),
)
noise_header = st.one_of(
    st.none(), latin1, st.binary(max_size=60).map(lambda b: b.decode("latin-1"))
)
field_suffix = st.one_of(st.just(""), latin1.map(lambda rest: "&" + rest), latin1)
form_type = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
    ]
)
other_type = st.one_of(
    st.sampled_from(["text/plain", "multipart/form-data; boundary=x", ""]), latin1
)


@st.composite
def sent_requests(draw: st.DrawFn) -> Sent:
    """A request with a credential in none, one or several of the places
    RFC 6750 §2 allows, and noise in the others."""
    places = draw(st.sets(st.sampled_from(["header", "query", "body"])))

    authorization = draw(bearer_header if "header" in places else noise_header)

    query = draw(st.one_of(st.just(""), latin1))
    if "query" in places:
        query = f"access_token={draw(encoded)}{draw(field_suffix)}"

    body = draw(st.binary(max_size=200))
    content_type = draw(st.one_of(form_type, other_type))
    if "body" in places:
        field = f"access_token={draw(encoded)}{draw(field_suffix)}"
        body = field.encode("latin-1", "replace")
        content_type = draw(form_type)

    return Sent(
        path=draw(st.sampled_from(PATHS)),
        method=draw(st.one_of(st.sampled_from(["GET", "POST", "PUT"]), latin1)),
        authorization=authorization,
        query=query,
        content_type=content_type,
        body=body,
        content_length=draw(
            st.one_of(st.none(), latin1, st.integers(-5, 10**7).map(str))
        ),
    )


def carries_good_token(sent: Sent) -> bool:
    body = sent.body.decode("latin-1")
    seen = (sent.authorization or "", unquote_plus(sent.query), unquote_plus(body))
    return any(GOOD in part for part in seen)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sent=sent_requests())
def test_anything_a_client_sends_gets_a_clean_answer(
    deployment: Deployment, sent: Sent
) -> None:
    """200, 400, 401 or 403; well-formed headers; only the fixed refusals,
    which never echo what the client sent."""
    calls_before = len(deployment.echo.users)

    answer = call(deployment.app, sent)
    event(f"answered {answer.code}")
    if answer.code == 200:
        event(f"answered 200 for {deployment.echo.users[-1]}")

    assert answer.code in (200, 400, 401, 403), answer
    assert re.fullmatch(r"\d{3} [A-Za-z ]+", answer.status)
    for name, value in answer.headers:
        assert HEADER_NAME.fullmatch(name), name
        assert not CONTROL.search(value), (name, value)
        value.encode("latin-1")

    if answer.code == 200:
        # Never a wrong yes: an identity only for the token the store issued.
        user = deployment.echo.users[-1]
        assert user is None or carries_good_token(sent)
        if sent.path.startswith("/api/"):
            assert user == USER
        return

    assert len(deployment.echo.users) == calls_before
    challenge = answer.header("WWW-Authenticate")
    assert challenge is not None and challenge.startswith('Bearer realm="')
    assert CHALLENGE.fullmatch(challenge), challenge
    assert answer.refusal() in deployment.refusals, answer

    # Hypothesis also draws string constants of this code, which a refusal
    # may say as its own words: only a value it would not say is an echo.
    said = [
        body.decode("latin-1") + str(header) for _, body, header in deployment.refusals
    ]
    for raw in (sent.authorization or "", sent.query, sent.body.decode("latin-1")):
        if len(raw) > 8 and not any(raw in text for text in said):
            assert raw not in answer.text()
