"""`POST /api/v1/optimize` and `GET /api/v1/optimize/{plan_id}`: stored plans and every error path."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from performance_agent.storage.plans import SqlPlanRepository
from tests.api.analysis_support import register, seed_history, simulated
from tests.conftest import KEYS, OPERATOR_KEY, VIEWER_KEY, ClientFactory, assert_envelope

PLAN_FIELDS = {"plan_id", "instance_id", "engine", "created_at", "current_config", "recommendations"}
RECOMMENDATION_FIELDS = {
    "id", "type", "title", "changes", "env", "rationale", "estimated_impact", "addresses", "assumptions", "risk",
    "requires_restart", "executable",
}  # fmt: skip


@pytest.fixture
def api(client_factory: ClientFactory) -> TestClient[Litestar]:
    client = client_factory(scrape_background=False)
    register(
        client,
        "vllm-0",
        engine_args={"--max-num-seqs": 256},
        gpu={"model": "H100-80GB", "memory_gib": 80, "count": 1},
        model={"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters_b": 8.03},
    )
    server, clock = simulated("vllm", faults={"kv_pressure": 0.8})
    seed_history(client, "vllm-0", server, clock, scrapes=41)
    return client


def optimize(client: TestClient[Litestar], **body: Any) -> Any:
    return client.post("/api/v1/optimize", json=body)


def test_a_plan_is_stored_and_addresses_the_finding_first(api: TestClient[Litestar]) -> None:
    response = optimize(api, instance_id="vllm-0")
    assert response.status_code == 200, response.text
    plan = response.json()
    assert set(plan) >= PLAN_FIELDS
    assert plan["plan_id"].startswith("plan-")
    assert plan["engine"] == "vllm"
    assert plan["objective"] == "balanced"
    assert plan["constraints"] == {"allow_quantization": True, "max_quality_risk": "low"}
    assert any(f["type"] == "kv_cache_pressure" for f in plan["findings"])
    first = plan["recommendations"][0]
    assert set(first) == RECOMMENDATION_FIELDS
    assert "kv_cache_pressure" in first["addresses"]
    assert "kv_cache_pressure" in first["rationale"]
    for recommendation in plan["recommendations"]:
        assert all(flag.startswith("--") for flag in recommendation["changes"]), recommendation
        for impact in recommendation["estimated_impact"].values():
            assert impact["low"] <= impact["high"]
    settings = plan["current_config"]["settings"]
    assert settings["max_running_requests"]["flag"] == "--max-num-seqs"
    assert (settings["max_running_requests"]["value"], settings["max_running_requests"]["source"]) == (256, "declared")
    assert plan["current_config"]["gpu"]["name"] == "H100-80GB"

    again = api.get(f"/api/v1/optimize/{plan['plan_id']}")
    assert again.status_code == 200
    assert again.json() == {**plan, "outcomes": []}  # as stored; no rollout has executed it yet


def test_the_plan_repository_serves_workflows_the_same_plan(api: TestClient[Litestar]) -> None:
    plan = optimize(api, instance_id="vllm-0").json()
    repository = SqlPlanRepository(api.app.state.context.database)
    portal = api.blocking_portal
    assert portal is not None
    stored = portal.call(repository.get, plan["plan_id"])
    assert stored is not None
    assert [(r.id, r.executable, r.changes, r.env) for r in stored.recommendations] == [
        (r["id"], r["executable"], r["changes"], r["env"]) for r in plan["recommendations"]
    ]
    assert portal.call(repository.get, "plan-" + "0" * 32) is None


def test_no_quantization_when_not_allowed(api: TestClient[Litestar]) -> None:
    plan = optimize(api, instance_id="vllm-0", objective="latency", constraints={"allow_quantization": False}).json()
    assert plan["objective"] == "latency"
    assert plan["constraints"]["max_quality_risk"] == "low"
    assert plan["recommendations"]
    assert all(r["type"] != "quantization" for r in plan["recommendations"])


def test_each_call_stores_a_new_plan(api: TestClient[Litestar]) -> None:
    first = optimize(api, instance_id="vllm-0").json()["plan_id"]
    second = optimize(api, instance_id="vllm-0").json()["plan_id"]
    assert first != second
    assert api.get(f"/api/v1/optimize/{first}").status_code == 200


def test_unknown_instance_is_404(api: TestClient[Litestar]) -> None:
    assert_envelope(optimize(api, instance_id="nobody"), 404, "not_found")


def test_no_data_is_409_insufficient_data(api: TestClient[Litestar]) -> None:
    register(api, "dark-0")
    envelope = assert_envelope(optimize(api, instance_id="dark-0"), 409, "insufficient_data")
    assert envelope["context"]["scrape_error"] == "upstream_unreachable"


def test_unknown_plan_is_404(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(api.get("/api/v1/optimize/plan-" + "a" * 32), 404, "not_found")
    assert envelope["context"] == {"plan_id": "plan-" + "a" * 32}


def test_malformed_plan_id_is_422(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(api.get("/api/v1/optimize/not-a-plan"), 422, "validation_error")
    assert envelope["invalid_fields"] == ["path.plan_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instance_id": "vllm-0", "objective": "cheapest"}, "body.objective"),
        ({"instance_id": "vllm-0", "constraints": {"max_quality_risk": "none"}}, "body.constraints.max_quality_risk"),
        ({"instance_id": "vllm-0", "constraints": {"allow_quantization": 1}}, "body.constraints.allow_quantization"),
        ({"instance_id": "vllm-0", "constraints": {"budget": 1}}, "body.constraints.budget"),
        ({"instance_id": "vllm-0", "window_minutes": -1}, "body.window_minutes"),
        ({"objective": "latency"}, "body.instance_id"),
        ({"instance_id": "vllm-0", "dry_run": True}, "body.dry_run"),
    ],
)
def test_invalid_bodies_are_422(api: TestClient[Litestar], body: dict[str, Any], field: str) -> None:
    envelope = assert_envelope(optimize(api, **body), 422, "validation_error")
    assert field in envelope["invalid_fields"], envelope


def test_optimize_needs_the_operator_role_and_reading_a_plan_the_viewer(client_factory: ClientFactory) -> None:
    client = client_factory(api_keys=KEYS, scrape_background=False)
    denied = client.post("/api/v1/optimize", json={"instance_id": "x"}, headers={"X-API-Key": VIEWER_KEY})
    assert_envelope(denied, 403, "forbidden")
    allowed = client.post("/api/v1/optimize", json={"instance_id": "x"}, headers={"X-API-Key": OPERATOR_KEY})
    assert_envelope(allowed, 404, "not_found")
    read = client.get("/api/v1/optimize/plan-" + "b" * 32, headers={"X-API-Key": VIEWER_KEY})
    assert_envelope(read, 404, "not_found")
