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

from performance_agent.judge.effects import compare_with_impact
from performance_agent.optimization.schemas import OptimizationPlan
from performance_agent.optimization.service import OptimizationService
from performance_agent.storage.plans import SqlitePlanRepository
from performance_agent.workflows.controllers import workflow_defaults
from performance_agent.workflows.effects import plan_outcomes
from performance_agent.workflows.plans import stored_plan_lookup
from performance_agent.workflows.service import WorkflowService
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
            plans = SqlitePlanRepository(harness.agent.database)
            harness.service = WorkflowService(
                workflows=harness.workflows,
                instances=harness.agent.instances,
                defaults=workflow_defaults(harness.agent),
                plans=stored_plan_lookup(plans),
                clock=clock,
            )
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

            service = OptimizationService.of(harness.agent)
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
