from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from litestar.testing import TestClient

from performance_agent.app import create_app
from performance_agent.replicas.coordinator import LEADER_LEASE
from tests.conftest import ADMIN_KEY, KEYS, ClientFactory, assert_envelope, make_settings

if TYPE_CHECKING:
    from litestar import Litestar


def test_health_reports_status_version_and_uptime(client: TestClient[Litestar]) -> None:
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])
    assert body["uptime_s"] >= 0


def test_detailed_health_probes_storage(client: TestClient[Litestar]) -> None:
    response = client.get("/api/v1/health/detailed")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    storage = next(check for check in body["checks"] if check["name"] == "storage")
    assert storage["status"] == "healthy"
    assert storage["latency_s"] >= 0


def test_detailed_health_writes_at_most_once_a_second_and_hides_the_path(client: TestClient[Litestar]) -> None:
    context = client.app.state.context
    writes: list[str] = []
    original = context.database.run

    async def counting(work: Any) -> Any:
        writes.append(getattr(work, "__name__", "?"))
        return await original(work)

    context.database.run = counting
    try:
        for _ in range(50):
            body = client.get("/api/v1/health/detailed").json()
            assert client.get("/api/v1/health/ready").status_code == 200
    finally:
        del context.database.run
    assert writes.count("_write_and_read") <= 2  # 100 probes within about a second
    storage = next(check for check in body["checks"] if check["name"] == "storage")
    assert storage["detail"] == "write/read ok"
    assert context.database.description not in client.get("/api/v1/health/detailed").text


def test_detailed_health_shows_the_database_path_to_a_keyed_caller(client_factory: ClientFactory) -> None:
    client = client_factory(api_keys=KEYS)
    where = client.app.state.context.database.description
    assert where not in client.get("/api/v1/health/detailed").text
    keyed = client.get("/api/v1/health/detailed", headers={"X-API-Key": ADMIN_KEY}).json()
    assert keyed["checks"][0]["detail"] == f"write/read ok ({where})"


def test_detailed_health_is_503_when_storage_fails(client: TestClient[Litestar]) -> None:
    context = client.app.state.context
    client.blocking_portal.call(context.database.close)  # the database goes away under a running agent
    response = client.get("/api/v1/health/detailed")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"][0]["name"] == "storage"
    assert "not open" in body["checks"][0]["detail"]
    ready = client.get("/api/v1/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"


def test_ready_is_503_until_startup_finished() -> None:
    with TestClient(create_app(make_settings())) as started:
        assert started.get("/api/v1/health/ready").status_code == 200
    not_started = TestClient(create_app(make_settings()))  # no context manager: the lifespan never ran
    response = not_started.get("/api/v1/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "not_ready", "detail": "start-up has not finished"}


def test_config_never_shows_keys_or_secrets(client_factory: ClientFactory) -> None:
    client = client_factory(
        api_keys=KEYS,
        webhook_secret="hmac-secret-value-123",
        alert_webhook_url="http://127.0.0.1:9/hook?token=abc-secret-token",
    )
    response = client.get("/api/v1/config", headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200
    text = response.text
    for secret in (ADMIN_KEY, "hmac-secret-value-123", "abc-secret-token", "api_keys", "webhook_secret"):
        assert secret not in text
    body = response.json()
    assert body["auth_enabled"] is True
    assert body["settings"]["port"] == 8000
    assert body["settings"]["webhook_signing_enabled"] is True
    assert body["settings"]["alert_webhook_configured"] is True


def test_capabilities_come_from_the_code(client: TestClient[Litestar]) -> None:
    from performance_agent.workflows.machine import WorkflowStatus

    body = client.get("/api/v1/capabilities").json()
    assert body["workflow_statuses"] == [status.value for status in WorkflowStatus]
    assert "approve" in body["workflow_actions"]


def test_agent_metrics_count_requests_by_route_template(client: TestClient[Litestar]) -> None:
    client.get("/api/v1/health")
    client.get("/api/v1/config")
    page = client.get("/metrics").text
    assert 'performance_agent_http_requests_total{method="GET",route="/api/v1/config",status="200"}' in page
    assert "performance_agent_http_request_duration_seconds_bucket" in page
    assert 'performance_agent_build_info{version="' in page


def test_cors_is_off_by_default_and_on_when_configured(client_factory: ClientFactory) -> None:
    preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
    closed = client_factory()
    assert "access-control-allow-origin" not in closed.get("/api/v1/health", headers={"Origin": "https://x"}).headers
    open_ = client_factory(cors_origins=["https://dash.example"])
    answer = open_.options("/api/v1/config", headers=preflight)
    assert answer.status_code in (200, 204)
    assert answer.headers["access-control-allow-origin"] == "https://dash.example"


def test_unknown_route_is_404_envelope(client: TestClient[Litestar]) -> None:
    body = assert_envelope(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert body["path"] == "/api/v1/nothing-here"


def test_capabilities_list_registered_engines_detectors_and_types(client: TestClient[Litestar]) -> None:
    from performance_agent.analysis.detectors import DETECTORS
    from performance_agent.engines.registry import ADAPTERS

    body = client.get("/api/v1/capabilities").json()
    assert body["engines"] == sorted(ADAPTERS) == ["sglang", "tgi", "vllm"]
    assert body["bottleneck_types"] == list(DETECTORS)
    assert set(body["optimization_types"]) == {"kv_cache", "quantization", "batching"}


def test_detailed_health_shows_this_replica_leading_its_own_database(client_factory: ClientFactory) -> None:
    client = client_factory(replica_id="agent-a", lease_ttl_s=12.0)
    body = client.get("/api/v1/health/detailed").json()
    replica = body["replica"]
    assert (replica["replica_id"], replica["role"]) == ("agent-a", "leader")
    leader = replica["leader"]
    assert leader["replica_id"] == "agent-a"
    since, expires = datetime.fromisoformat(leader["since"]), datetime.fromisoformat(leader["expires_at"])
    assert abs((datetime.now(UTC) - since).total_seconds()) < 60
    assert 8.0 <= (expires - since).total_seconds() <= 12.5  # renewed every third of the lease
    names = {check["name"] for check in body["checks"]}
    assert {"loop:replica-lease", "loop:collector", "loop:history-retention"} <= names


def test_a_follower_answers_200_naming_the_leader_and_runs_no_leader_loops(client_factory: ClientFactory) -> None:
    client = client_factory(replica_id="agent-a")
    context = client.app.state.context
    portal = client.blocking_portal
    assert portal is not None
    give_up = time.monotonic() + 10
    while "performance_agent_instances{" not in client.get("/metrics").text:  # the leader's first collector pass
        assert time.monotonic() < give_up
        time.sleep(0.02)
    # Another replica holds the lease (as after this one stalled past its expiry): this one follows.
    portal.call(context.storage.leases.release, LEADER_LEASE, "agent-a")
    portal.call(context.storage.leases.acquire, LEADER_LEASE, "agent-b", 60.0)
    portal.call(context.coordinator.step)
    response = client.get("/api/v1/health/detailed")
    assert response.status_code == 200
    body = response.json()
    assert body["replica"]["role"] == "follower"
    assert body["replica"]["replica_id"] == "agent-a"
    assert body["replica"]["leader"]["replica_id"] == "agent-b"
    names = {check["name"] for check in body["checks"]}
    assert "loop:collector" not in names
    assert "loop:history-retention" not in names
    assert {"loop:workflow-reconciler", "loop:judgement-runner", "loop:replica-lease"} <= names
    assert "performance_agent_instances{" not in client.get("/metrics").text  # the leader's figure, not stale here


def test_an_unnamed_replica_is_named_after_its_host_and_process(client: TestClient[Litestar]) -> None:
    replica_id = client.get("/api/v1/health/detailed").json()["replica"]["replica_id"]
    assert re.fullmatch(rf".+-{os.getpid()}-[0-9a-f]{{6}}", replica_id)
