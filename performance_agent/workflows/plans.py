"""Starting a workflow from stored optimization plans (`{"plan_id", "recommendation_ids"}`).

Workflows read plans through a narrow lookup (a plan's engine and its recommendations' ids,
`executable`, `changes` and `env`), so the rollout rules are tested without the optimizer;
`stored_plan_lookup` reads them from the plan repository. Only executable recommendations can be
rolled out: advice such as "use an AWQ checkpoint" needs more than a flag flip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.errors import ErrorDetail, RequestValidationError, UnprocessableError

if TYPE_CHECKING:
    from performance_agent.optimization.ports import PlanRepository
    from performance_agent.workflows.schemas import FlagValue, WorkflowCreate

__all__ = ("PlanLookup", "PlanRecommendation", "PlanView", "resolve_plan_changes", "stored_plan_lookup")


@dataclass(frozen=True, slots=True)
class PlanRecommendation:
    id: str
    executable: bool
    changes: dict[str, FlagValue]
    env: dict[str, str]
    title: str = ""


@dataclass(frozen=True, slots=True)
class PlanView:
    plan_id: str
    engine: str
    recommendations: list[PlanRecommendation] = field(default_factory=list)


PlanLookup = Callable[[str], Awaitable[PlanView | None]]


def stored_plan_lookup(plans: PlanRepository) -> PlanLookup:
    """Plans as `POST /optimize` stored them (immutable, so a workflow sees what was approved)."""

    async def lookup(plan_id: str) -> PlanView | None:
        plan = await plans.get(plan_id)
        if plan is None:
            return None
        return PlanView(
            plan_id=plan.plan_id,
            engine=plan.engine,
            recommendations=[
                PlanRecommendation(
                    id=item.id,
                    executable=item.executable,
                    changes=dict(item.changes),
                    env=dict(item.env),
                    title=item.title,
                )
                for item in plan.recommendations
            ],
        )

    return lookup


async def resolve_plan_changes(
    plans: PlanLookup | None, body: WorkflowCreate
) -> tuple[dict[str, FlagValue], dict[str, str | None], str]:
    """The merged flags and variables of the chosen recommendations, and the plan's engine.

    422 when the plan or a recommendation is unknown, a recommendation is not executable, or two
    recommendations set one flag to different values.
    """
    if body.plan_id is None or not body.recommendation_ids:
        return {}, {}, ""  # the form check reports the missing half
    plan = None if plans is None else await plans(body.plan_id)
    if plan is None:
        raise RequestValidationError(
            f"No stored plan {body.plan_id!r}.",
            [ErrorDetail(field="body.plan_id", message="no stored plan has this id", type="not_found")],
        )
    by_id = {recommendation.id: recommendation for recommendation in plan.recommendations}
    problems: list[ErrorDetail] = []
    refused: list[str] = []
    changes: dict[str, FlagValue] = {}
    env: dict[str, str | None] = {}
    for index, recommendation_id in enumerate(body.recommendation_ids):
        field_name = f"body.recommendation_ids.{index}"
        recommendation = by_id.get(recommendation_id)
        if recommendation is None:
            problems.append(ErrorDetail(field=field_name, message=f"plan has no {recommendation_id}", type="not_found"))
            continue
        if not recommendation.executable:
            refused.append(recommendation_id)
            problems.append(
                ErrorDetail(
                    field=field_name,
                    message=f"{recommendation_id} is not executable: it needs more than a flag change",
                    type="not_executable",
                )
            )
            continue
        for target, values in ((changes, recommendation.changes), (env, recommendation.env)):
            for name, value in values.items():
                if name in target and target[name] != value:
                    problems.append(
                        ErrorDetail(
                            field=field_name,
                            message=f"{name} = {value!r} contradicts an earlier recommendation ({target[name]!r})",
                            type="invalid",
                        )
                    )
                target[name] = value  # type: ignore[assignment]
    if refused and len(problems) == len(refused):
        raise UnprocessableError(
            "Non-executable recommendations cannot be rolled out: " + ", ".join(refused),
            error="recommendation_not_executable",
            details=problems,
            context={"plan_id": plan.plan_id, "recommendation_ids": refused},
        )
    if problems:
        summary = "; ".join(f"{d.field}: {d.message}" for d in problems)
        raise RequestValidationError(f"The plan's recommendations cannot be rolled out: {summary}", problems)
    return changes, env, plan.engine
