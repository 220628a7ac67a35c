"""Measured effects of a rollout's stages, and how they compare with the plan the rollout started from.

`record_stage_effects` is the reconciler's one call when a stage passes (the last stage's pass
completes the workflow): it pools the canary's and the reference's stored scrapes over the
judged part of the stage into bucket counts (`metrics.builder.cohort_counts`) and stores the
effects `metrics.effects.measure_effects` estimates. `plan_outcomes` sets those measurements
against each executed recommendation's `estimated_impact` when a plan is read back; it is pure.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Literal

import msgspec

from performance_agent.clock import utc
from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.builder import cohort_counts
from performance_agent.metrics.effects import compare_impacts, measure_effects
from performance_agent.metrics.goodput import goodput_targets
from performance_agent.optimization.schemas import PlanOutcome
from performance_agent.workflows.schemas import StageEffects

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from performance_agent.judge.counts import CohortCounts
    from performance_agent.optimization.schemas import OptimizationPlan
    from performance_agent.workflows.observer import CohortObserver
    from performance_agent.workflows.ports import WorkflowRepository
    from performance_agent.workflows.state import WorkflowDoc

__all__ = ("MAX_PLAN_WORKFLOWS", "plan_outcomes", "record_stage_effects", "slo_limits", "stored_plan_outcomes")

logger = logging.getLogger("performance_agent.workflows.effects")


def slo_limits(targets: SloTargets) -> dict[str, float]:
    """Per-request latency limits by histogram key: the same targets goodput is measured against."""
    return {target.histogram: target.limit_s for target in goodput_targets(targets)}


async def _counts(observer: CohortObserver, spans: Sequence[tuple[str, float, float]]) -> tuple[CohortCounts, float]:
    """The cohort's pooled counts over the spans, and the instance-seconds its scrapes cover."""
    scrapes = [await observer.scrapes_between(i, since, until) for i, since, until in spans]
    covered = math.fsum(
        (max(s.collected_at for s in one) - min(s.collected_at for s in one)).total_seconds()
        for one in scrapes
        if len(one) >= 2
    )
    return cohort_counts(scrapes), covered


async def record_stage_effects(
    doc: WorkflowDoc, observer: CohortObserver, now: float, canary_ids: Sequence[str], control_ids: Sequence[str]
) -> None:
    """Store the effects measured over the stage that just passed (replacing an earlier entry for it).

    Measuring is a report, not a gate: if reading the stored scrapes fails, the failure is logged
    and the stage passes without an entry, rather than holding a healthy rollout back.
    """
    try:
        entry = await _measure_stage(doc, observer, now, canary_ids, control_ids)
    except Exception:
        logger.exception(
            "measuring the stage's effects failed; the stage passes without them",
            extra={"workflow": doc.workflow_id, "stage_index": doc.stage_index},
        )
        return
    doc.effects = [*(e for e in doc.effects if e.stage_index != doc.stage_index), entry]


async def _measure_stage(
    doc: WorkflowDoc, observer: CohortObserver, now: float, canary_ids: Sequence[str], control_ids: Sequence[str]
) -> StageEffects:
    """The stage's effects, judged from the end of its warm-up.

    The reference is the control cohort over the same span, or the baseline window captured
    before the first change. Latency limits are the first canary instance's registered SLO
    targets, else `SloTargets`' built-in defaults.
    """
    progress = doc.progress
    since = progress.warmup_until if progress is not None else (doc.stage_started_at or now)
    canary, canary_exposure = await _counts(observer, [(i, since, now) for i in canary_ids])
    note: str | None = None
    reference_name: Literal["control", "baseline"]
    if control_ids:
        reference_name = "control"
        reference, reference_exposure = await _counts(observer, [(i, since, now) for i in control_ids])
    else:
        reference_name = "baseline"
        captured = doc.baseline.captured_at.timestamp() if doc.baseline is not None else None
        spans = [(i, mark, captured) for i, mark in doc.baseline_marks.items()] if captured is not None else []
        reference, reference_exposure = await _counts(observer, spans)
    targets = await observer.slo_targets(canary_ids[0]) if canary_ids else None
    effects = []
    if canary.requests > 0 and reference.requests > 0 and canary_exposure > 0 and reference_exposure > 0:
        effects = measure_effects(
            canary,
            reference,
            slo_limits(targets or SloTargets()),
            canary_exposure_s=canary_exposure,
            reference_exposure_s=reference_exposure,
        )
    else:
        note = f"no requests counted in the {'canary' if canary.requests <= 0 else reference_name} over the stage"
    return StageEffects(
        stage_index=doc.stage_index,
        percent=doc.stages[doc.stage_index],
        final=doc.stage_index == len(doc.stages) - 1,
        reference=reference_name,
        window_start=utc(since),
        window_end=utc(now),
        canary_instances=canary.instances,
        reference_instances=reference.instances,
        canary_requests=canary.requests,
        reference_requests=reference.requests,
        effects=effects,
        note=note,
    )


def plan_outcomes(plan: OptimizationPlan, workflows: Sequence[WorkflowDoc]) -> list[PlanOutcome]:
    """Every predicted impact of the plan's executed recommendations against every measured stage.

    Workflows are taken in the order given (oldest first is the natural order), stages in the
    order they passed; recommendations a workflow did not execute are not listed.
    """
    recommendations = {recommendation.id: recommendation for recommendation in plan.recommendations}
    outcomes: list[PlanOutcome] = []
    for doc in workflows:
        if doc.plan_id != plan.plan_id:
            continue
        executed = [recommendations[i] for i in doc.recommendation_ids or [] if i in recommendations]
        for stage in doc.effects:
            for recommendation in executed:
                for outcome in compare_impacts(stage.effects, recommendation.estimated_impact):
                    outcomes.append(
                        PlanOutcome(
                            **msgspec.structs.asdict(outcome),
                            recommendation_id=recommendation.id,
                            workflow_id=doc.workflow_id,
                            workflow_status=doc.status,
                            stage_index=stage.stage_index,
                            percent=stage.percent,
                            final=stage.final,
                        )
                    )
    return outcomes


#: Workflows read back with a plan: far more rollouts than one plan's recommendations ever need.
MAX_PLAN_WORKFLOWS = 1000


def stored_plan_outcomes(
    workflows: WorkflowRepository, limit: int = MAX_PLAN_WORKFLOWS
) -> Callable[[OptimizationPlan], Awaitable[list[PlanOutcome]]]:
    """`plan_outcomes` over the stored workflows started from the plan (the optimizer reads it, never the rollouts)."""

    async def outcomes(plan: OptimizationPlan) -> list[PlanOutcome]:
        return plan_outcomes(plan, await workflows.of_plan(plan.plan_id, limit))

    return outcomes
