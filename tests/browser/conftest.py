"""A real browser for the provider's pages: Debian's Chromium under Playwright.

Playwright drives ``/usr/bin/chromium`` and never downloads a browser of its
own; ``make test`` installs Chromium when it is missing. The browser talks
only to servers on loopback: the provider under test, and the consumer's
web site, a small server the test starts for its ``redirect_uri``.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.conftest import LiveServer
from tests.oauth_client import (
    AUTHORIZE,
    PASSWORD,
    ConsumerCredentials,
    add_user,
    make_pkce,
    register_consumer,
)

CHROMIUM = "/usr/bin/chromium"

CHROMIUM_HELP = (
    f"The browser tests need Debian's Chromium at {CHROMIUM}: run "
    "'apt-get install chromium' (or 'make test' as root)."
)

# The machine has no network beyond loopback: nothing may try to reach out.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]

# Playwright's waits end when their condition holds; this only bounds a
# wait that never will, so a broken page fails fast instead of hanging.
WAIT_LIMIT_MS = 10_000

CONSUMER_NAME = "Photo Sharing"
USERNAME = "alice"


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium, shared by the browser tests."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(CHROMIUM_HELP)

    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a browser context of its own: no cookies from other tests."""
    context = browser.new_context(viewport={"width": 900, "height": 700})
    context.set_default_timeout(WAIT_LIMIT_MS)
    page = context.new_page()
    yield page
    context.close()


class _SiteServer(ThreadingHTTPServer):
    callbacks: list[str]


class _SitePage(BaseHTTPRequestHandler):
    server: _SiteServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/callback":
            self.server.callbacks.append(self.path)
            self._answer(200, "<title>Photo Sharing</title><p>Back home.</p>")
        elif url.path == "/frame":
            src = parse_qs(url.query).get("src", [""])[0]
            frame = f'<iframe src="{html.escape(src)}" width="600" height="400">'
            self._answer(200, f"<title>Win a prize</title>{frame}</iframe>")
        else:
            self._answer(404, "<title>Not found</title>")

    def _answer(self, status: int, body: str) -> None:
        data = f"<!doctype html>{body}".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class ConsumerSite:
    """The consumer's web site, a real server on a loopback port.

    ``/callback`` is its ``redirect_uri``: it answers with a short page and
    records each path and query the provider sent the browser to.
    ``/frame?src=URL`` shows any URL in an iframe, as a site trying to
    trick a user into clicking through the consent page would.
    """

    base: str
    callbacks: list[str]

    @property
    def redirect_uri(self) -> str:
        return self.base + "/callback"

    def framing(self, url: str) -> str:
        return f"{self.base}/frame?{urlencode({'src': url})}"


@pytest.fixture
def consumer_site() -> Iterator[ConsumerSite]:
    server = _SiteServer(("127.0.0.1", 0), _SitePage)
    server.callbacks = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ConsumerSite(f"http://127.0.0.1:{server.server_address[1]}", server.callbacks)
    server.shutdown()
    server.server_close()
    thread.join()


@dataclass
class Consumer:
    """The consumer ``Photo Sharing``: its registration, site and PKCE pair."""

    credentials: ConsumerCredentials
    site: ConsumerSite
    verifier: str
    challenge: str
    state: str = "photo-state-7"

    def authorization_url(self, base: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.credentials.client_id,
            "redirect_uri": self.credentials.redirect_uri,
            "state": self.state,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        }
        return f"{base}{AUTHORIZE}?{urlencode(params)}"


@pytest.fixture
def consumer(live_server: LiveServer, consumer_site: ConsumerSite) -> Consumer:
    """Photo Sharing and the user alice, registered with the CLI."""
    credentials = register_consumer(
        live_server, "photo-sharing", CONSUMER_NAME, consumer_site.redirect_uri
    )
    add_user(live_server, USERNAME, PASSWORD)
    verifier, challenge = make_pkce()
    return Consumer(credentials, consumer_site, verifier, challenge)
