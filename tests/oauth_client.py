"""Acting as a consumer and as a user's browser against the provider.

Shared by the provider tests (in process, through WebTest) and the
end-to-end tests (over HTTP, through requests). Nothing here fakes a
server: every helper drives the real pages and endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit

import requests
import webtest

from oauth_tai.system import Provider

ENDPOINT = "/oauth2/endpoint/connectionsProvider"
AUTHORIZE = ENDPOINT + "/authorize"
TOKEN = ENDPOINT + "/token"
INTROSPECT = ENDPOINT + "/introspect"
REVOKE = ENDPOINT + "/revoke"
LOGIN = "/oauth2/login"

API = "/connections/opensocial/oauth/rest"
PROFILE = API + "/people/@me/@self"
STATUS = API + "/ublog/@me/@all"
STREAM = API + "/activitystreams/@me/@all"

# Port 9 (discard) on loopback: a redirect URI the tests read from the
# Location header and never follow.
REDIRECT_URI = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery"

ClientAuth = Literal["basic", "form", "none"]


@dataclass(frozen=True)
class ConsumerCredentials:
    """A registered consumer as the application that holds it knows it."""

    client_id: str
    client_secret: str
    name: str
    redirect_uri: str


# -- small pieces ---------------------------------------------------------------


def make_pkce() -> tuple[str, str]:
    """Return a PKCE code verifier and its S256 challenge (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return verifier, challenge


def basic_auth(client_id: str, client_secret: str) -> str:
    """Return an ``Authorization`` value for HTTP Basic client auth.

    RFC 6749 §2.3.1: id and secret are form-encoded before base64.
    """
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def query_of(location: str) -> dict[str, str]:
    """Return the query parameters of a redirect target."""
    return dict(parse_qsl(urlsplit(location).query))


@dataclass
class HtmlForm:
    """The first form of a page: where it posts and its hidden fields."""

    action: str = ""
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form: HtmlForm | None = None
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form" and self.form is None:
            self.form = HtmlForm(action=values.get("action", ""))
            self._inside = True
        elif tag == "input" and self._inside and values.get("type") == "hidden":
            assert self.form is not None
            self.form.fields[values.get("name", "")] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def parse_form(html: str) -> HtmlForm:
    """Return the first form in ``html``; fail the test if there is none."""
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    assert parser.form is not None, "the page has no form"
    return parser.form


# -- the out-of-process server ------------------------------------------------


class CommandRunner(Protocol):
    def cli(
        self, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


def run_json(server: CommandRunner, *args: str, input: str | None = None) -> Any:
    """Run an ``oauth-tai`` command with ``--json``; return what it printed."""
    result = server.cli(*args, "--json", input=input)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def register_consumer(
    server: CommandRunner, client_id: str, name: str, redirect_uri: str
) -> ConsumerCredentials:
    """Register a consumer with ``oauth-tai clients add``; return its id and secret."""
    command = ("clients", "add", client_id, "--name", name)
    data = run_json(server, *command, "--redirect-uri", redirect_uri)
    return ConsumerCredentials(
        data["client_id"], data["client_secret"], data["name"], data["redirect_uri"]
    )


def add_user(server: CommandRunner, username: str, password: str = PASSWORD) -> None:
    """Add a user to the built-in directory with ``oauth-tai users add``."""
    run_json(
        server, "users", "add", username, "--password-stdin", input=password + "\n"
    )


def loopback_session() -> requests.Session:
    """Return a requests session that ignores proxy settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


def log_in(
    browser: requests.Session, login_url: str, username: str, password: str
) -> requests.Response:
    """Fill in and post the login form at ``login_url``; return the raw answer."""
    page = browser.get(login_url, allow_redirects=False, timeout=30)
    assert page.status_code == 200, page.text
    form = parse_form(page.text)
    assert form.fields.get("csrf_token"), "the login form has no csrf_token"

    data = {**form.fields, "username": username, "password": password}
    return browser.post(
        urljoin(page.url, form.action), data=data, allow_redirects=False, timeout=30
    )


def decide(
    browser: requests.Session, consent_url: str, decision: str = "authorize"
) -> requests.Response:
    """Load the consent page and click a button; return the 303 unfollowed."""
    page = browser.get(consent_url, allow_redirects=False, timeout=30)
    assert page.status_code == 200, page.text
    form = parse_form(page.text)
    data = {**form.fields, "decision": decision}
    return browser.post(
        urljoin(page.url, form.action), data=data, allow_redirects=False, timeout=30
    )


def authorization_params(
    consumer: ConsumerCredentials,
    *,
    challenge: str | None = None,
    state: str = "state-1",
) -> dict[str, str]:
    """Return a consumer's authorization request, with S256 PKCE if given."""
    params = {
        "response_type": "code",
        "client_id": consumer.client_id,
        "redirect_uri": consumer.redirect_uri,
        "state": state,
    }
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    return params


def authorization_url(
    base: str,
    consumer: ConsumerCredentials,
    *,
    challenge: str | None = None,
    state: str = "state-1",
) -> str:
    """Return the URL a consumer sends the user to."""
    params = authorization_params(consumer, challenge=challenge, state=state)
    return f"{base}{AUTHORIZE}?{urlencode(params)}"


def post_token(
    session: requests.Session,
    base: str,
    consumer: ConsumerCredentials,
    fields: dict[str, str],
) -> requests.Response:
    """Post to the token endpoint with HTTP Basic client auth."""
    headers = {"Authorization": basic_auth(consumer.client_id, consumer.client_secret)}
    return session.post(base + TOKEN, data=fields, headers=headers, timeout=30)


def authorize_as_user(
    browser: requests.Session,
    authorization_url: str,
    username: str,
    password: str = PASSWORD,
) -> dict[str, str]:
    """Log in if asked to, authorize, and return the redirect's query."""
    first = browser.get(authorization_url, allow_redirects=False, timeout=30)
    consent_url = authorization_url
    if first.status_code == 303:
        login_url = urljoin(first.url, first.headers["Location"])
        logged_in = log_in(browser, login_url, username, password)
        assert logged_in.status_code == 303, logged_in.text
        consent_url = urljoin(first.url, logged_in.headers["Location"])

    answer = decide(browser, consent_url)
    assert answer.status_code == 303, answer.text
    return query_of(answer.headers["Location"])


# -- the provider in process ---------------------------------------------------


def register_in_process(
    provider: Provider, client_id: str, name: str
) -> ConsumerCredentials:
    """Register a consumer straight in the registry; return its credentials."""
    consumer, secret = provider.registry.add(client_id, name, REDIRECT_URI)
    return ConsumerCredentials(client_id, secret, consumer.name, REDIRECT_URI)


class InProcessProvider:
    """The composed WSGI app under WebTest, with a user and consumers.

    :param app: the app, with this browser's cookie jar.
    :param provider: the same database, to register consumers and users.
    :param consumer: the consumer most tests act as.
    """

    def __init__(
        self,
        app: webtest.TestApp,
        provider: Provider,
        consumer: ConsumerCredentials,
        username: str = "bob",
    ) -> None:
        self.app = app
        self.provider = provider
        self.consumer = consumer
        self.username = username
        self._other: ConsumerCredentials | None = None

    @classmethod
    def create(cls, app: webtest.TestApp, provider: Provider) -> InProcessProvider:
        """Add the user ``bob`` and a consumer; return the harness."""
        provider.users.add("bob", PASSWORD)
        return cls(
            app, provider, register_in_process(provider, "reader-app", "Reader App")
        )

    @property
    def other(self) -> ConsumerCredentials:
        """A second consumer, for what one must not do to another's tokens.

        Registered on first use: each registration hashes a secret.
        """
        if self._other is None:
            self._other = register_in_process(self.provider, "other-app", "Other")
        return self._other

    def new_browser(self) -> InProcessProvider:
        """Return the same site seen from a browser with no cookies yet."""
        app = webtest.TestApp(self.app.app)
        return InProcessProvider(app, self.provider, self.consumer, self.username)

    # -- the browser side

    def log_in(self, password: str = PASSWORD) -> webtest.TestResponse:
        """Post the login form as the test user; return the answer unfollowed."""
        form = self.app.get(LOGIN, {"next": "/"}).forms[0]
        form["username"] = self.username
        form["password"] = password
        return form.submit(expect_errors=True)

    def authorization_params(
        self,
        consumer: ConsumerCredentials | None = None,
        *,
        challenge: str | None = None,
        state: str = "state-1",
    ) -> dict[str, str]:
        consumer = consumer or self.consumer
        return authorization_params(consumer, challenge=challenge, state=state)

    def consent_page(self, **params: Any) -> webtest.TestResponse:
        """Return the consent page for an authorization request (logged in)."""
        page = self.app.get(AUTHORIZE, self.authorization_params(**params))
        assert page.status_int == 200, page.text
        return page

    def decide(
        self, decision: str = "authorize", **params: Any
    ) -> webtest.TestResponse:
        """Click a consent button; return the 303 unfollowed."""
        page = self.consent_page(**params)
        return page.forms[0].submit("decision", value=decision)

    def code(self, **params: Any) -> str:
        """Authorize a request and return the code from the redirect."""
        answer = self.decide("authorize", **params)
        assert answer.status_int == 303, answer.text
        return query_of(answer.headers["Location"])["code"]

    # -- the consumer side

    def token(
        self,
        fields: dict[str, str],
        consumer: ConsumerCredentials | None = None,
        *,
        auth: ClientAuth = "basic",
    ) -> webtest.TestResponse:
        """Post to the token endpoint with client auth by ``basic`` or ``form``."""
        return self._post(TOKEN, fields, consumer, auth)

    def exchange(
        self,
        code: str,
        verifier: str | None = None,
        consumer: ConsumerCredentials | None = None,
    ) -> webtest.TestResponse:
        consumer = consumer or self.consumer
        fields = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": consumer.redirect_uri,
        }
        if verifier is not None:
            fields["code_verifier"] = verifier
        return self.token(fields, consumer)

    def refresh(
        self, refresh_token: str, consumer: ConsumerCredentials | None = None
    ) -> webtest.TestResponse:
        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self.token(fields, consumer)

    def issue_tokens(self) -> dict[str, Any]:
        """Run the whole code flow with PKCE; return the token response."""
        verifier, challenge = make_pkce()
        answer = self.exchange(self.code(challenge=challenge), verifier)
        assert answer.status_int == 200, answer.text
        tokens: dict[str, Any] = answer.json
        return tokens

    def introspect(
        self, token: str, consumer: ConsumerCredentials | None = None
    ) -> webtest.TestResponse:
        return self._post(INTROSPECT, {"token": token}, consumer, "basic")

    def revoke(
        self, token: str, consumer: ConsumerCredentials | None = None
    ) -> webtest.TestResponse:
        return self._post(REVOKE, {"token": token}, consumer, "basic")

    def api(self, access_token: str) -> webtest.TestResponse:
        """Read the user's profile through the middleware with a bearer token."""
        headers = {"Authorization": f"Bearer {access_token}"}
        return self.app.get(PROFILE, headers=headers, expect_errors=True)

    def _post(
        self,
        path: str,
        fields: dict[str, str],
        consumer: ConsumerCredentials | None,
        auth: ClientAuth,
    ) -> webtest.TestResponse:
        consumer = consumer or self.consumer
        headers: dict[str, str] = {}
        if auth == "basic":
            headers["Authorization"] = basic_auth(
                consumer.client_id, consumer.client_secret
            )
        elif auth == "form":
            fields = {
                **fields,
                "client_id": consumer.client_id,
                "client_secret": consumer.client_secret,
            }
        return self.app.post(path, fields, headers=headers, expect_errors=True)
