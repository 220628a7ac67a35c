"""Shared fixtures: settings and clients for agents built per test (no global app state)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from litestar import Litestar
from litestar.testing import TestClient

from performance_agent.app import create_app
from performance_agent.outbound.target_guard import Resolver, system_resolver
from performance_agent.settings import Settings
from tests.postgres_support import fresh_database_url

# CI must be reproducible: the same examples every run, and no timing-based failures on a shared
# 2-core machine. Locally, Hypothesis keeps exploring new examples (still without deadlines).
hypothesis_settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
hypothesis_settings.register_profile("dev", deadline=None, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")

_E2E_FOLDER = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e starts real processes: mark it `e2e` even if a new module forgets to."""
    for item in items:
        if item.path.is_relative_to(_E2E_FOLDER):
            item.add_marker(pytest.mark.e2e)


ADMIN_KEY = "admin-key-0123456789abcdef"
OPERATOR_KEY = "operator-key-0123456789abcdef"
APPROVER_KEY = "approver-key-0123456789abcdef"
VIEWER_KEY = "viewer-key-0123456789abcdef"
KEYS = [
    f"root:admin:{ADMIN_KEY}",
    f"ops:operator:{OPERATOR_KEY}",
    f"lead:approver:{APPROVER_KEY}",
    f"dash:viewer:{VIEWER_KEY}",
]


#: `postgresql` runs the agents these tests build on fresh PostgreSQL databases instead of
#: in-memory SQLite (`make test` runs the workflow, judgement and instance API suites that way too).
TEST_BACKEND_ENV = "PERF_AGENT_TEST_BACKEND"


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database": ":memory:",
        "rate_limit_per_minute": 100_000,
        "rate_limit_per_hour": 1_000_000,
        "scrape_allowlist": ["127.0.0.1/32", "::1/128"],
        "webhook_allowlist": ["127.0.0.1/32", "::1/128"],
        "scrape_interval_s": 3600.0,
    }
    base.update(overrides)
    if os.environ.get(TEST_BACKEND_ENV) == "postgresql" and base["database"] == ":memory:":
        base.setdefault("database_url", fresh_database_url())
    return msgspec.convert(base, Settings)


ClientFactory = Callable[..., TestClient[Litestar]]


@pytest.fixture
def client_factory() -> Iterator[ClientFactory]:
    """Build an agent with the given settings overrides; its lifespan runs, and it is closed after the test.

    `resolver=` substitutes the target guard's DNS (the composition root's seam), not a setting.
    """
    opened: list[TestClient[Litestar]] = []

    def factory(*, resolver: Resolver = system_resolver, **overrides: Any) -> TestClient[Litestar]:
        app = create_app(make_settings(**overrides), resolver=resolver)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield factory
    for client in reversed(opened):
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: ClientFactory) -> TestClient[Litestar]:
    return client_factory()


@pytest.fixture
def auth_client(client_factory: ClientFactory) -> TestClient[Litestar]:
    return client_factory(api_keys=KEYS)


def assert_envelope(response: Any, status: int, error: str) -> dict[str, Any]:
    """Every non-2xx answer has the same envelope; return it for further checks."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert set(body) >= {"error", "message", "details", "timestamp", "path", "request_id", "context"}
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["timestamp"].endswith("Z") or body["timestamp"].endswith("+00:00")
    assert isinstance(body["details"], list)
    assert isinstance(body["context"], dict)
    assert body["message"]
    return body


def peer_client(app: Litestar, peer: str) -> httpx.AsyncClient:
    """An ASGI client whose requests come from `peer` (Litestar's TestClient is always `testclient`)."""
    transport = httpx.ASGITransport(app=cast("Any", app), client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://agent")
