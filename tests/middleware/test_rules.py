"""Interception rules, token sources, scopes and identity-header stripping."""

from __future__ import annotations

from typing import Any

import pytest
from webtest import TestApp

from oauth_tai.bearer import InsufficientScope
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.rules import InterceptPolicy, InterceptRule
from oauth_tai.system import Provider
from tests.middleware.test_middleware import EchoApp, bearer

POLICY = InterceptPolicy(
    [
        InterceptRule("/api/admin/", scopes=frozenset({"admin"})),
        InterceptRule("/api/people/", require_user=True),
        InterceptRule("/api/write/", methods=frozenset({"post"})),
        InterceptRule("/api/aud/", audience="https://api.example"),
        InterceptRule("/api/", pattern=r"/api/v\d+/"),
        InterceptRule("/pages/", oauth_only=False),
    ],
    exclude=["/api/v1/health"],
)


class Answers:
    """A validator answering from a table of tokens, as a provider would."""

    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def introspect(self, token: str) -> dict[str, Any] | None:
        self.asked.append(token)
        answer = self.answers.get(token)
        return None if answer is None else {"active": True, **answer}


@pytest.fixture
def tokens(provider: Provider) -> dict[str, str]:
    """Real tokens from the store: one for a user, scopes connections."""
    provider.registry.add("rules-app", "Rules App", "http://127.0.0.1:9/cb")
    grant = provider.store.consent("alice", "rules-app", "connections")
    provider.store.issue(grant, "user-token", None, 3600)
    return {"user": "user-token"}


def _app(validator: Any, **options: Any) -> tuple[EchoApp, TestApp]:
    echo = EchoApp()
    return echo, TestApp(
        TrustAssociationMiddleware(echo, validator, policy=POLICY, **options)
    )


FAR = 2**31


def test_missing_scope_is_403_with_the_scope_needed(
    provider: Provider, tokens: dict[str, str]
) -> None:
    echo, web = _app(provider.store)

    answer = web.get("/api/admin/x", headers=bearer(tokens["user"]), status=403)

    challenge = answer.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="admin"' in challenge
    assert echo.calls == []


def test_scope_is_checked_on_every_request_cache_hit_or_not(
    provider: Provider, tokens: dict[str, str]
) -> None:
    """A token cached on one route is still refused on a route needing more."""
    echo, web = _app(provider.store)
    web.get("/api/v1/x", headers=bearer(tokens["user"]), status=200)

    web.get("/api/admin/x", headers=bearer(tokens["user"]), status=403)
    web.get("/api/v1/y", headers=bearer(tokens["user"]), status=200)
    assert len(echo.calls) == 2


def test_a_consumer_only_token_is_refused_where_a_user_is_needed() -> None:
    validator = Answers({"cc": {"client_id": "batch", "exp": FAR}})
    echo, web = _app(validator)

    assert web.get("/api/v1/x", headers=bearer("cc")).json["REMOTE_USER"] is None
    web.get("/api/people/x", headers=bearer("cc"), status=403)
    assert len(echo.calls) == 1


def test_methods_limit_a_rule() -> None:
    validator = Answers({})
    echo, web = _app(validator)

    web.post("/api/write/x", headers=bearer("nope"), status=401)
    assert web.get("/api/write/x").status_int == 200, "GET is not intercepted"
    assert echo.calls[0]["has_identity_key"] is False


def test_audience_is_checked() -> None:
    validator = Answers(
        {
            "right": {"client_id": "c", "exp": FAR, "aud": ["https://api.example"]},
            "wrong": {"client_id": "c", "exp": FAR, "aud": "https://other.example"},
        }
    )
    echo, web = _app(validator)

    web.get("/api/aud/x", headers=bearer("right"), status=200)
    answer = web.get("/api/aud/x", headers=bearer("wrong"), status=401)
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_excluded_and_unmatched_paths_pass_through() -> None:
    validator = Answers({})
    echo, web = _app(validator)

    assert web.get("/api/v1/health").status_int == 200
    assert web.get("/api/other").status_int == 200, "pattern does not match"
    assert web.get("/elsewhere").status_int == 200
    assert validator.asked == []


def test_optional_rule_lets_a_tokenless_request_through_untouched() -> None:
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    echo, web = _app(validator)

    plain = web.get("/pages/home", extra_environ={"REMOTE_USER": "sso-user"}).json
    assert plain["REMOTE_USER"] == "sso-user", "another authentication stays"
    assert plain["identity"] is None

    assert web.get("/pages/home", headers=bearer("good")).json["REMOTE_USER"] == "u"
    web.get("/pages/home", headers=bearer("bad"), status=401)


def test_body_token_only_when_enabled() -> None:
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    _, off = _app(validator)
    _, on = _app(validator, allow_body_token=True)

    off.post("/api/v1/x", {"access_token": "good"}, status=401)
    answer = on.post("/api/v1/x", {"access_token": "good", "other": "1"})
    assert answer.json["REMOTE_USER"] == "u"


def test_body_token_is_never_read_from_a_get() -> None:
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    _, web = _app(validator, allow_body_token=True)
    web.get("/api/v1/x", params={"access_token": "good"}, status=401)


def test_query_token_only_when_enabled() -> None:
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    _, off = _app(validator)
    _, on = _app(validator, allow_query_token=True)

    off.get("/api/v1/x?access_token=good", status=401)
    assert on.get("/api/v1/x?access_token=good").json["REMOTE_USER"] == "u"


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"url": "/api/v1/x?access_token=good", "headers": bearer("good")},
        {"url": "/api/v1/x?access_token=good&access_token=good"},
        {"url": "/api/v1/x?access_token=good", "params": {"access_token": "good"}},
    ],
)
def test_two_credentials_are_a_bad_request(request_kwargs: dict[str, Any]) -> None:
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    _, web = _app(validator, allow_body_token=True, allow_query_token=True)
    url = request_kwargs.pop("url")
    params = request_kwargs.pop("params", None)

    if params is None:
        answer = web.get(url, status=400, **request_kwargs)
    else:
        answer = web.post(url, params, status=400, **request_kwargs)
    assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]


def test_the_app_still_reads_the_form_body() -> None:
    seen: dict[str, bytes] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ["CONTENT_LENGTH"])
        seen["body"] = environ["wsgi.input"].read(length)
        start_response("200 OK", [])
        return [b""]

    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    web = TestApp(
        TrustAssociationMiddleware(app, validator, policy=POLICY, allow_body_token=True)
    )
    web.post("/api/v1/x", {"access_token": "good", "note": "kept"})
    assert seen["body"] == b"access_token=good&note=kept"


@pytest.mark.parametrize("path", ["/api/v1/x", "/elsewhere", "/pages/p"])
def test_identity_headers_from_a_client_are_removed_everywhere(path: str) -> None:
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update({k: v for k, v in environ.items() if k.startswith("HTTP_X_")})
        start_response("200 OK", [])
        return [b""]

    web = TestApp(TrustAssociationMiddleware(app, validator, policy=POLICY))
    spoof = {
        "X-Auth-User": "admin",
        "X-Auth-Consumer": "trusted",
        "X-Auth-Consumer-Name": "Trusted",
        "X-Auth-Scope": "admin",
        "X-Other": "kept",
        **bearer("good"),
    }
    web.get(path, headers=spoof)
    assert seen == {"HTTP_X_OTHER": "kept"}


def test_an_unreadable_answer_is_an_inactive_token() -> None:
    """A provider answering scope as a number is refused, not half-trusted."""
    validator = Answers(
        {
            "bad-scope": {"client_id": "c", "exp": FAR, "scope": 7},
            "bad-exp": {"client_id": "c", "exp": "soon"},
            "list-scope": {"client_id": "c", "exp": FAR, "scope": ["a", "admin"]},
        }
    )
    _, web = _app(validator)
    web.get("/api/v1/x", headers=bearer("bad-scope"), status=401)
    web.get("/api/v1/x", headers=bearer("bad-exp"), status=401)
    web.get("/api/admin/x", headers=bearer("list-scope"), status=200)


def test_issuer_is_checked_when_a_rule_names_one() -> None:
    validator = Answers(
        {
            "ours": {"client_id": "c", "exp": FAR, "iss": "https://idp.example"},
            "theirs": {"client_id": "c", "exp": FAR, "iss": "https://idp.example/"},
            "none": {"client_id": "c", "exp": FAR},
        }
    )
    policy = InterceptPolicy([InterceptRule("/api/", issuer="https://idp.example")])
    web = TestApp(TrustAssociationMiddleware(EchoApp(), validator, policy=policy))

    web.get("/api/x", headers=bearer("ours"), status=200)
    web.get("/api/x", headers=bearer("theirs"), status=401)
    web.get("/api/x", headers=bearer("none"), status=401)


def test_report_only_lets_refused_requests_through_without_identity() -> None:
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    echo, web = _app(validator, report_only=True)

    assert web.get("/api/v1/x", headers=bearer("good")).json["REMOTE_USER"] == "u"
    refused = web.get(
        "/api/v1/x", headers=bearer("bad"), extra_environ={"REMOTE_USER": "mallory"}
    ).json
    assert refused["REMOTE_USER"] is None and refused["identity"] is None
    assert web.get("/api/admin/x", headers=bearer("good")).json["identity"] is None
    assert web.get("/api/v1/x").status_int == 200
    assert len(echo.calls) == 4


def test_report_only_logs_rule_tier_and_reason(caplog: Any) -> None:
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    _, web = _app(validator, report_only=True)

    with caplog.at_level("INFO"):
        web.get("/api/admin/x", headers=bearer("good"))
        web.get("/api/admin/x", headers=bearer("good"))
        web.get("/api/v1/x", headers=bearer("good"))

    audit = [r.getMessage() for r in caplog.records if r.name == "oauth_tai.audit"]
    allowed = [
        r.getMessage() for r in caplog.records if "would allow" in r.getMessage()
    ]
    assert len(audit) == 2
    assert "insufficient_scope" in audit[0] and "/api/admin/" in audit[0]
    assert "provider" in audit[0] and "l1" in audit[1]
    assert len(allowed) == 1 and "l1" in allowed[0]


class _OnlyAppOne(InterceptRule):
    """A rule of a deployment's own: one consumer only."""

    def check(self, identity: Any) -> None:
        super().check(identity)
        if identity.consumer_id != "app-one":
            raise InsufficientScope("this resource serves app-one only")


def test_a_rule_with_its_own_check_is_checked_on_every_request() -> None:
    validator = Answers(
        {
            "one": {"client_id": "app-one", "username": "u", "exp": FAR},
            "two": {"client_id": "app-two", "username": "u", "exp": FAR},
        }
    )
    web = TestApp(
        TrustAssociationMiddleware(
            EchoApp(), validator, policy=InterceptPolicy([_OnlyAppOne("/api/")])
        )
    )

    for _ in range(2):  # a miss, then an L1 hit
        web.get("/api/x", headers=bearer("one"), status=200)
        web.get("/api/x", headers=bearer("two"), status=403)
    assert validator.asked == ["one", "two"]


def test_a_refusal_leaves_no_other_layers_user_in_the_environ() -> None:
    """A layer around the middleware (an access log) sees no borrowed user."""
    validator = Answers({"good": {"client_id": "c", "username": "u", "exp": FAR}})
    middleware = TrustAssociationMiddleware(EchoApp(), validator, policy=POLICY)
    environ: dict[str, Any] = {
        "PATH_INFO": "/api/v1/x",
        "REQUEST_METHOD": "GET",
        "HTTP_AUTHORIZATION": "Bearer bad",
        "REMOTE_USER": "mallory",
        "AUTH_TYPE": "Basic",
    }
    statuses: list[str] = []
    middleware(environ, lambda status, headers, *_: statuses.append(status))

    assert statuses == ["401 Unauthorized"]
    assert "REMOTE_USER" not in environ and "AUTH_TYPE" not in environ
