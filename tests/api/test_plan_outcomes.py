"""`GET /api/v1/optimize/{plan_id}` shows the measured outcomes of the recommendations its rollouts executed.

The rollout itself is driven tick by tick in tests/unit/test_workflow_effects.py; here a workflow
started from the plan through the API gets a passed stage's effects written as the reconciler
writes them, and the HTTP view is checked field by field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
import pytest

from performance_agent.metrics.effects import MeasuredEffect
from performance_agent.optimization.schemas import OptimizationPlan
from performance_agent.storage.plans import SqlPlanRepository
from performance_agent.storage.workflows import SqlWorkflowRepository
from performance_agent.workflows.schemas import StageEffects
from tests.api.test_workflows import HOOK, WORKFLOWS, recommendation, register
from tests.conftest import ClientFactory, assert_envelope

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import TestClient

PLAN_ID = "plan-0123456789abcdef0123456789abcdef"


@pytest.fixture
def client(client_factory: ClientFactory) -> TestClient[Litestar]:
    return client_factory(workflow_tick_s=60.0)


def store_plan(client: TestClient[Litestar], instance_id: str) -> None:
    plan = msgspec.convert(
        {
            "plan_id": PLAN_ID,
            "instance_id": instance_id,
            "engine": "vllm",
            "created_at": "2026-01-01T00:00:00Z",
            "objective": "balanced",
            "constraints": {},
            "current_config": {"engine": "vllm", "engine_version": None, "settings": {}},
            "recommendations": [
                recommendation(
                    "r-batch",
                    {"--max-num-seqs": 512},
                    {},
                    True,
                    {
                        "ttft_p99_s": {"low": -0.5, "high": -0.2},
                        "generation_tokens_per_s": {"low": 0.0, "high": 0.3},
                        "itl_p99_s": {"low": 0.0, "high": 0.2},
                        "kv_cache_capacity_tokens": {"low": 0.5, "high": 0.5},
                    },
                ),
                recommendation(
                    "r-other", {"--max-num-batched-tokens": 4096}, {}, True, {"ttft_p99_s": {"low": 0, "high": 0}}
                ),
            ],
            "findings": [],
            "summary": "test plan",
            "notes": [],
        },
        OptimizationPlan,
    )
    client.blocking_portal.call(SqlPlanRepository(client.app.state.context.database).add, plan)


def measured(metric: str, kind: str, estimate: float, low: float | None, high: float | None) -> MeasuredEffect:
    return MeasuredEffect(metric=metric, kind=kind, estimate=estimate, low=low, high=high, confidence=0.95)  # type: ignore[arg-type]


def pass_a_stage(client: TestClient[Litestar], workflow_id: str) -> None:
    """Write stage 0's effects into the stored workflow as `record_stage_effects` does."""
    repository = SqlWorkflowRepository(client.app.state.context.database)
    stored = client.blocking_portal.call(repository.get, workflow_id)
    assert stored is not None
    stored.doc.effects = [
        StageEffects(
            stage_index=0,
            percent=10,
            final=False,
            reference="control",
            window_start=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
            window_end=datetime(2026, 1, 1, 12, 5, tzinfo=UTC),
            canary_instances=1,
            reference_instances=3,
            canary_requests=1200.0,
            reference_requests=3600.0,
            effects=[
                measured("ttft_s.p99", "ratio", 0.6, 0.4, 0.75),  # -40% (-60%..-25%): within -50%..-20%
                measured("requests_per_instance", "ratio", 1.5, 1.4, 1.6),  # +40..60%: above 0..30%
                measured("itl_s.p99", "ratio", 0.7, 0.5, 0.9),  # -50..-10%: below 0..+20%
            ],
        )
    ]
    client.blocking_portal.call(repository.save, stored.doc, stored.version)


def test_the_plan_shows_each_executed_recommendation_s_outcome_per_stage(client: TestClient[Litestar]) -> None:
    ids = register(client, 4)
    store_plan(client, ids[0])
    started = client.post(
        WORKFLOWS,
        json={"instance_ids": ids, "plan_id": PLAN_ID, "recommendation_ids": ["r-batch"], "actuator": {"url": HOOK}},
    )
    assert started.status_code == 201, started.text
    workflow_id = started.json()["workflow_id"]
    assert started.json()["effects"] == []

    before = client.get(f"/api/v1/optimize/{PLAN_ID}")
    assert before.status_code == 200
    assert before.json()["outcomes"] == []  # started, nothing measured yet

    pass_a_stage(client, workflow_id)
    workflow = client.get(f"{WORKFLOWS}/{workflow_id}").json()
    assert [stage["stage_index"] for stage in workflow["effects"]] == [0]

    outcomes = client.get(f"/api/v1/optimize/{PLAN_ID}").json()["outcomes"]
    by_key = {outcome["impact_key"]: outcome for outcome in outcomes}
    assert set(by_key) == {"ttft_p99_s", "generation_tokens_per_s", "itl_p99_s", "kv_cache_capacity_tokens"}
    assert all(o["recommendation_id"] == "r-batch" for o in outcomes)  # r-other was not executed
    ttft = by_key["ttft_p99_s"]
    assert ttft["workflow_id"] == workflow_id
    assert (ttft["stage_index"], ttft["percent"], ttft["final"]) == (0, 10, False)
    assert ttft["workflow_status"] == "capturing_baseline"
    assert ttft["metric"] == "ttft_s.p99"
    assert (ttft["predicted_low"], ttft["predicted_high"]) == (-0.5, -0.2)
    assert ttft["measured_change"] == pytest.approx(-0.4)
    assert (ttft["measured_low"], ttft["measured_high"]) == pytest.approx((-0.6, -0.25))
    assert ttft["confidence"] == 0.95
    assert ttft["outcome"] == "within"
    assert by_key["generation_tokens_per_s"]["outcome"] == "above"
    assert by_key["generation_tokens_per_s"]["metric"] == "requests_per_instance"
    assert by_key["itl_p99_s"]["outcome"] == "below"
    unmeasurable = by_key["kv_cache_capacity_tokens"]
    assert unmeasurable["outcome"] is None
    assert unmeasurable["metric"] is None
    assert "no measured counterpart" in unmeasurable["reason"]


def test_an_unknown_plan_is_still_404(client: TestClient[Litestar]) -> None:
    response = client.get(f"/api/v1/optimize/{PLAN_ID}")
    assert_envelope(response, 404, "not_found")
