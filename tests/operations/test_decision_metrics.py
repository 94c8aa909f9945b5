"""The middleware counts its decisions and which tier answered."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from webtest import TestApp

from oauth_tai.cache import TokenCache
from oauth_tai.middleware import TrustAssociationMiddleware
from oauth_tai.rules import InterceptPolicy, InterceptRule
from oauth_tai.system import Provider


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def test_decisions_and_tiers_are_counted(provider: Provider) -> None:
    provider.registry.add("metric-app", "Metric App", "https://m.example/cb")
    grant = provider.store.consent("alice", "metric-app", "connections")
    provider.store.issue(grant, "metric-token", None, 3600)
    policy = InterceptPolicy(
        [InterceptRule("/api/"), InterceptRule("/open/", oauth_only=False)]
    )
    web = TestApp(
        TrustAssociationMiddleware(
            _ok, provider.store, TokenCache(b"m" * 32), policy=policy
        )
    )
    names = {
        "allowed": (
            "oauth_tai_decisions_total",
            {"outcome": "allowed", "reason": "token"},
        ),
        "invalid": (
            "oauth_tai_decisions_total",
            {"outcome": "refused", "reason": "invalid_token"},
        ),
        "missing": (
            "oauth_tai_decisions_total",
            {"outcome": "refused", "reason": "missing_token"},
        ),
        "passed": (
            "oauth_tai_decisions_total",
            {"outcome": "passed", "reason": "not_intercepted"},
        ),
        "no_token": (
            "oauth_tai_decisions_total",
            {"outcome": "passed", "reason": "no_token"},
        ),
        "l1": ("oauth_tai_cache_answers_total", {"tier": "l1"}),
        "provider": ("oauth_tai_cache_answers_total", {"tier": "provider"}),
        "negative": ("oauth_tai_cache_negative_hits_total", {}),
    }
    before = {key: _value(name, **labels) for key, (name, labels) in names.items()}

    good = {"Authorization": "Bearer metric-token"}
    bad = {"Authorization": "Bearer nope"}
    web.get("/api/x", headers=good)
    web.get("/api/x", headers=good)
    web.get("/api/x", headers=bad, status=401)
    web.get("/api/x", headers=bad, status=401)
    web.get("/api/x", status=401)
    web.get("/elsewhere")
    web.get("/open/x")

    after = {key: _value(name, **labels) for key, (name, labels) in names.items()}
    moved = {key: after[key] - before[key] for key in names}
    assert moved == {
        "allowed": 2,
        "invalid": 2,
        "missing": 1,
        "passed": 1,
        "no_token": 1,
        "l1": 2,
        "provider": 2,
        "negative": 1,
    }


def test_refusals_are_in_the_audit_trail_without_the_token(
    provider: Provider, caplog: Any
) -> None:
    provider.registry.add("audit-app", "Audit App", "https://a.example/cb")
    grant = provider.store.consent("bob", "audit-app", "connections")
    provider.store.issue(grant, "audit-token", None, 3600)
    policy = InterceptPolicy([InterceptRule("/api/", scopes=frozenset({"admin"}))])
    web = TestApp(
        TrustAssociationMiddleware(
            _ok, provider.store, TokenCache(b"a" * 32), policy=policy
        )
    )

    with caplog.at_level("INFO", logger="oauth_tai.audit"):
        web.get("/api/x", headers={"Authorization": "Bearer audit-token"}, status=403)
        web.get("/api/x", headers={"Authorization": "Bearer wrong-token"}, status=401)

    lines = [r.getMessage() for r in caplog.records if r.name == "oauth_tai.audit"]
    assert len(lines) == 2, lines
    assert "insufficient_scope" in lines[0] and "audit-app" in lines[0]
    assert "bob" in lines[0]
    assert "invalid_token" in lines[1]
    assert not any("audit-token" in line or "wrong-token" in line for line in lines)
