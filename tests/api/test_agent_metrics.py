"""The agent's own `/metrics`: one registry per app, so two agents in one process keep their own figures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ClientFactory

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import TestClient

HEALTH = "/api/v1/health"


def sample(client: TestClient[Litestar], name: str, labels: dict[str, str]) -> float | None:
    """The value of one series on the agent's `/metrics` page, or None when the page lacks it."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(response.text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(key) == value for key, value in labels.items()):
                return float(found.value)
    return None


def register(client: TestClient[Litestar], instance_id: str) -> None:
    body = {"instance_id": instance_id, "engine": "vllm", "endpoint": "http://127.0.0.1:1"}
    assert client.post("/api/v1/instances", json=body).status_code == 201


def collect_nothing(client: TestClient[Litestar], instance_id: str) -> None:
    """A scrape of a closed port: a failure counted on this agent's `/metrics`."""
    body = {"instance_id": instance_id, "endpoint": "http://127.0.0.1:1"}
    assert client.post("/api/v1/collect/vllm", json=body).status_code == 502


def test_two_apps_in_one_process_keep_their_own_figures(client_factory: ClientFactory) -> None:
    first = client_factory(scrape_background=False)
    second = client_factory(scrape_background=False)
    for _ in range(3):
        assert first.get(HEALTH).status_code == 200
    assert second.get(HEALTH).status_code == 200
    served = {"route": HEALTH, "method": "GET", "status": "200"}
    assert sample(first, "performance_agent_http_requests_total", served) == 3.0
    assert sample(second, "performance_agent_http_requests_total", served) == 1.0

    register(first, "a-0")
    register(first, "a-1")
    register(second, "b-0")
    for client in (first, second):  # one dispatch pass each: the gauge is read from it at scrape time
        portal = client.blocking_portal
        assert portal is not None
        portal.call(client.app.state.context.collector.dispatch_due)
    assert sample(first, "performance_agent_instances", {"status": "pending"}) == 2.0
    assert sample(second, "performance_agent_instances", {"status": "pending"}) == 1.0

    collect_nothing(first, "a-0")
    collect_nothing(first, "a-1")
    collect_nothing(second, "b-0")
    failed = {"engine": "vllm", "reason": "upstream_unreachable"}
    assert sample(first, "performance_agent_scrape_failures_total", failed) == 2.0
    assert sample(second, "performance_agent_scrape_failures_total", failed) == 1.0


def test_every_app_shows_its_build_and_process_figures(client_factory: ClientFactory) -> None:
    from performance_agent import __version__

    for client in (client_factory(scrape_background=False), client_factory(scrape_background=False)):
        assert sample(client, "performance_agent_build_info", {"version": __version__}) == 1.0
        assert sample(client, "process_cpu_seconds_total", {}) is not None
        assert sample(client, "python_info", {}) == 1.0


def test_a_collector_pass_that_never_ran_exports_no_instance_counts(client_factory: ClientFactory) -> None:
    client = client_factory(scrape_background=False)
    register(client, "a-0")
    assert sample(client, "performance_agent_instances", {"status": "pending"}) is None
