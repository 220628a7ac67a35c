"""Measured effects stored at every passed stage of a plan-started rollout, and the plan's outcome view.

A simulated fleet on one `ManualClock` runs a whole rollout tick by tick (as in test_reconciler);
the change is the plan's executable recommendation, so `GET /optimize/{plan_id}`'s service shows
what each stage measured against what the plan predicted.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from performance_agent.metrics.effects import compare_with_impact
from performance_agent.optimization.schemas import OptimizationPlan
from performance_agent.workflows.effects import plan_outcomes, record_stage_effects
from performance_agent.workflows.state import WorkflowDoc
from tests.rollout_support import ReconcilerHarness
from tests.unit.test_reconciler import DONE, GUARDRAILS, MONITOR, clock, fleet, receiver

__all__ = ("clock", "fleet", "receiver")  # the rollout fixtures of test_reconciler, shared

if TYPE_CHECKING:
    from performance_agent.simulator.fleet import ManualClock, SimulatedFleet
    from tests.rollout_support import WebhookReceiver

PREDICTED = {
    "itl_p99_s": {"low": -0.6, "high": 0.0},
    "generation_tokens_per_s": {"low": -0.5, "high": 0.1},
    "kv_cache_capacity_tokens": {"low": 0.0, "high": 0.0},
}


def plan(instance_id: str) -> OptimizationPlan:
    recommendation: dict[str, Any] = {
        "id": "r-seqs",
        "type": "batching",
        "title": "smaller batch",
        "changes": {"max_num_seqs": 128},
        "env": {},
        "rationale": "test",
        "estimated_impact": PREDICTED,
        "addresses": [],
        "assumptions": [],
        "risk": {"quality": "low", "stability": "low"},
        "requires_restart": True,
        "executable": True,
    }
    return msgspec.convert(
        {
            "plan_id": "plan-effects",
            "instance_id": instance_id,
            "engine": "vllm",
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            "objective": "balanced",
            "constraints": {},
            "current_config": {"engine": "vllm", "engine_version": None, "settings": {}},
            "recommendations": [recommendation],
            "findings": [],
            "summary": "test plan",
            "notes": [],
        },
        OptimizationPlan,
    )


def test_every_passed_stage_stores_its_effects_and_the_plan_shows_their_outcomes(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            plans = harness.agent.storage.plans  # the agent's workflows look plans up here (composition root)
            ids = await harness.register_fleet(fleet, max_num_seqs=256)
            await plans.add(plan(ids[0]))
            workflow = await harness.start(
                {
                    "instance_ids": ids,
                    "plan_id": "plan-effects",
                    "recommendation_ids": ["r-seqs"],
                    "actuator": {"type": "webhook", "url": receiver.url},
                    "monitor": MONITOR,
                    "guardrails": GUARDRAILS,
                }
            )
            workflow_id = workflow.workflow_id
            assert await harness.run_until(workflow_id, DONE, step_s=10.0) == "completed"

            view, _ = await harness.service.get(workflow_id)
            assert [(s.stage_index, s.percent, s.final, s.reference) for s in view.effects] == [
                (0, 10, False, "control"),
                (1, 50, False, "control"),
                (2, 100, True, "baseline"),
            ]
            first = view.effects[0]
            assert (first.canary_instances, first.reference_instances) == (1, 3)
            assert first.canary_requests > 0
            assert first.reference_requests > 0
            assert first.window_start < first.window_end
            measured = {e.metric: e for e in first.effects}
            # Built-in SLO defaults (the fleet registered none): TTFT, e2e and ITL limits.
            assert {"ttft_s.share_above_slo", "itl_s.p99", "goodput", "requests_per_instance"} <= set(measured)
            for effect in first.effects:
                if effect.low is not None and effect.high is not None:
                    assert effect.low <= effect.high

            service = harness.agent.optimization
            shown = await service.get_with_outcomes("plan-effects")
            assert shown.recommendations[0].id == "r-seqs"
            assert len(shown.outcomes) == 3 * len(PREDICTED)  # three stages, three predicted impacts each
            stored_plan = await plans.get("plan-effects")
            assert stored_plan is not None
            stored = await harness.workflows.get(workflow_id)
            assert stored is not None
            assert shown.outcomes == plan_outcomes(stored_plan, [stored.doc])
            for outcome in shown.outcomes:
                assert (outcome.workflow_id, outcome.recommendation_id, outcome.workflow_status) == (
                    workflow_id,
                    "r-seqs",
                    "completed",
                )
                predicted = PREDICTED[outcome.impact_key]
                assert (outcome.predicted_low, outcome.predicted_high) == (predicted["low"], predicted["high"])
                if outcome.impact_key == "kv_cache_capacity_tokens":
                    assert outcome.outcome is None
                    assert "no measured counterpart" in (outcome.reason or "")
                    continue
                stage = view.effects[outcome.stage_index]
                effect = next(e for e in stage.effects if e.metric == outcome.metric)
                impact = stored_plan.recommendations[0].estimated_impact[outcome.impact_key]
                assert outcome.outcome == compare_with_impact(effect, impact)
                assert outcome.outcome in ("within", "below", "above")

    asyncio.run(scenario())


class _BrokenObserver:
    async def scrapes_between(self, instance_id: str, since: float, until: float) -> list[Any]:
        raise OSError("disk gone")

    async def slo_targets(self, instance_id: str) -> None:
        return None


class _SilentObserver:
    """Scrapes without any request: nothing to measure."""

    async def scrapes_between(self, instance_id: str, since: float, until: float) -> list[Any]:
        return []

    async def slo_targets(self, instance_id: str) -> None:
        return None


def _stored_document() -> dict[str, Any]:
    """A workflow document as stored before measured effects existed (no `effects` key)."""
    return {
        "workflow_id": "wf-1",
        "engine": "vllm",
        "instance_ids": ["a", "b"],
        "changes": {},
        "env": {},
        "previous": {},
        "stages": [50, 100],
        "approval": {},
        "monitor": {
            "duration_s": 60,
            "interval_s": 15,
            "warmup_s": 0,
            "min_passing_windows": 1,
            "inconclusive_timeout_s": 60,
        },
        "guardrails": {},
        "actuator": {},
        "created_by": "ops",
        "created_at": 0.0,
        "updated_at": 0.0,
        "status": "monitoring",
        "status_since": 0.0,
        "stage_started_at": 100.0,
    }


def _doc() -> WorkflowDoc:
    return msgspec.json.decode(msgspec.json.encode(_stored_document()), type=WorkflowDoc)


def test_a_workflow_stored_before_effects_existed_still_decodes() -> None:
    assert "effects" not in _stored_document()
    assert _doc().effects == []


def test_a_failure_to_measure_never_holds_the_stage_back(caplog: pytest.LogCaptureFixture) -> None:
    doc = _doc()
    asyncio.run(record_stage_effects(doc, _BrokenObserver(), 200.0, ["a"], ["b"]))  # type: ignore[arg-type]
    assert doc.effects == []
    assert "measuring the stage's effects failed" in caplog.text


def test_a_stage_without_requests_is_recorded_with_the_reason() -> None:
    doc = _doc()
    asyncio.run(record_stage_effects(doc, _SilentObserver(), 200.0, ["a"], ["b"]))  # type: ignore[arg-type]
    assert len(doc.effects) == 1
    entry = doc.effects[0]
    assert (entry.stage_index, entry.percent, entry.final, entry.reference) == (0, 50, False, "control")
    assert entry.effects == []
    assert entry.note == "no requests counted in the canary over the stage"
    asyncio.run(record_stage_effects(doc, _SilentObserver(), 260.0, ["a"], ["b"]))  # type: ignore[arg-type]
    assert len(doc.effects) == 1  # the same stage again replaces its entry
