"""What counts against a caller's budget, and who the caller is (issue 13, "A rate limiter that holds").

The peer address matters here, so these tests speak ASGI through httpx with a chosen peer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from performance_agent.app import create_app
from tests.conftest import KEYS, VIEWER_KEY, assert_envelope, make_settings, peer_client

if TYPE_CHECKING:
    from litestar import Litestar

PROXY = "10.0.0.2"


def _agent(**overrides: Any) -> Litestar:
    settings: dict[str, Any] = {"rate_limit_per_minute": 5, "rate_limit_per_hour": 1000}
    settings.update(overrides)
    return create_app(make_settings(**settings))


def _statuses(app: Litestar, peer: str, requests: list[tuple[str, str, dict[str, str]]]) -> list[int]:
    """Send the requests one after the other from `peer`; return their statuses."""

    async def run() -> list[int]:
        async with peer_client(app, peer) as client:
            return [
                (await client.request(method, path, headers=headers)).status_code for method, path, headers in requests
            ]

    return asyncio.run(run())


def _answer(app: Litestar, peer: str, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def run() -> httpx.Response:
        async with peer_client(app, peer) as client:
            response = await client.request(method, path, headers=headers or {})
            await response.aread()
            return response

    return asyncio.run(run())


def test_a_forwarded_for_header_from_an_untrusted_peer_does_not_buy_a_fresh_bucket() -> None:
    app = _agent()  # no trusted proxies: the default
    spoofed = [("GET", "/api/v1/capabilities", {"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(8)]
    assert _statuses(app, "127.0.0.1", spoofed) == [200] * 5 + [429] * 3


def test_a_forwarded_for_header_from_a_trusted_proxy_names_the_client() -> None:
    app = _agent(trusted_proxies=["10.0.0.0/8"])
    distinct = [("GET", "/api/v1/capabilities", {"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(8)]
    assert _statuses(app, PROXY, distinct) == [200] * 8
    same = [("GET", "/api/v1/capabilities", {"X-Forwarded-For": "203.0.113.7"})] * 7
    assert _statuses(app, PROXY, same) == [200] * 5 + [429] * 2
    # The same header from a peer outside the trusted range is ignored.
    assert _statuses(app, "192.0.2.1", same) == [200] * 5 + [429] * 2


@pytest.mark.parametrize(
    ("method", "path", "first_status"),
    [
        ("GET", "/api/v1/no-such-thing", 404),
        ("GET", "/no-such-thing", 404),
        ("GET", "/wp-admin/setup.php", 404),
        ("DELETE", "/api/v1/capabilities", 405),
        ("POST", "/api/v1/health", 405),
        ("PATCH", "/metrics", 405),
    ],
)
def test_floods_of_404_and_405_are_refused_once_the_budget_is_spent(method: str, path: str, first_status: int) -> None:
    app = _agent()
    statuses = _statuses(app, "192.0.2.10", [(method, path, {})] * 8)
    assert statuses == [first_status] * 5 + [429] * 3
    # They spent the caller's budget for the real API too.
    assert _statuses(app, "192.0.2.10", [("GET", "/api/v1/capabilities", {})]) == [429]
    # Another caller is untouched.
    assert _statuses(app, "192.0.2.11", [("GET", "/api/v1/capabilities", {})]) == [200]


def test_a_flood_of_401s_is_refused_once_the_budget_is_spent() -> None:
    app = _agent(api_keys=KEYS)
    wrong = [("GET", "/api/v1/instances", {"X-API-Key": f"not-a-key-{n:010d}"}) for n in range(7)]
    assert _statuses(app, "192.0.2.20", wrong) == [401] * 5 + [429] * 2
    missing: list[tuple[str, str, dict[str, str]]] = [("GET", "/api/v1/instances", {})] * 7
    assert _statuses(app, "192.0.2.21", missing) == [401] * 5 + [429] * 2


def test_an_answer_replaced_by_a_429_is_the_whole_envelope() -> None:
    app = _agent(rate_limit_per_minute=1)
    assert _answer(app, "192.0.2.30", "GET", "/nowhere").status_code == 404
    refused = _answer(app, "192.0.2.30", "GET", "/nowhere", {"X-Request-ID": "flood-1"})
    body = assert_envelope(refused, 429, "rate_limited")
    assert body["path"] == "/nowhere"
    assert refused.headers["x-request-id"] == "flood-1"
    assert refused.headers["retry-after"] == "60"
    assert refused.headers["content-length"] == str(len(refused.content))


def test_health_probes_and_metrics_never_count() -> None:
    app = _agent(rate_limit_per_minute=1)
    for path in ("/api/v1/health", "/api/v1/health/ready", "/api/v1/health/detailed", "/metrics"):
        statuses = _statuses(app, "192.0.2.40", [("GET", path, {})] * 4)
        assert 429 not in statuses, path
    assert _statuses(app, "192.0.2.40", [("GET", "/api/v1/capabilities", {})] * 2) == [200, 429]
    health = _answer(app, "192.0.2.40", "GET", "/api/v1/health")
    assert health.status_code == 200
    assert "ratelimit-limit" not in health.headers
    assert len(health.headers["x-request-id"]) == 32


def test_an_authenticated_caller_is_counted_by_key_not_by_address() -> None:
    app = _agent(api_keys=KEYS)
    request = [("GET", "/api/v1/config", {"X-API-Key": VIEWER_KEY})]
    assert _statuses(app, "192.0.2.50", request * 3) == [200] * 3
    assert _statuses(app, "192.0.2.51", request * 3) == [200, 200, 429]


def test_refused_and_unmatched_requests_are_in_the_request_metrics() -> None:
    def count(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        registry = app.state.context.metrics.registry
        return registry.get_sample_value("performance_agent_http_requests_total", labels) or 0.0

    app = _agent(rate_limit_per_minute=1)
    before = (count("unmatched", "GET", "404"), count("unmatched", "GET", "429"), count("unmatched", "OTHER", "404"))
    _statuses(app, "192.0.2.60", [("GET", "/nowhere", {})] * 3)
    _statuses(app, "192.0.2.61", [("BREW", "/nowhere", {})])
    after = (count("unmatched", "GET", "404"), count("unmatched", "GET", "429"), count("unmatched", "OTHER", "404"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 2, 1]
