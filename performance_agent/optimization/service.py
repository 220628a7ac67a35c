"""The optimize use case: analyse the instance, plan from its findings, store the plan.

What the registration declared (`engine_args`, `gpu`, `model`) is translated here into the
planner's inputs; the planner itself never sees API shapes or storage.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from performance_agent.analysis.detectors import summarize
from performance_agent.clock import utc_now
from performance_agent.errors import NotFoundError
from performance_agent.optimization.config import normalize_arg_name
from performance_agent.optimization.planner import build_plan
from performance_agent.optimization.schemas import GpuSpec, ModelSpec, OptimizationPlan, PlanWithOutcomes

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from performance_agent.analysis.service import AnalysisService
    from performance_agent.fleet.schemas import InstanceSpec
    from performance_agent.optimization.api import OptimizeRequest
    from performance_agent.optimization.ports import PlanRepository
    from performance_agent.optimization.schemas import PlanOutcome

    #: The measured outcomes of a plan's executed recommendations (`workflows.effects.stored_plan_outcomes`,
    #: injected by the composition root: the optimizer never imports the rollouts).
    PlanOutcomesOf = Callable[[OptimizationPlan], Awaitable[list[PlanOutcome]]]

__all__ = ("OptimizationService", "declared_gpu", "declared_model")


def declared_gpu(spec: InstanceSpec) -> GpuSpec | None:
    if spec.gpu is None:
        return None
    return GpuSpec(name=spec.gpu.model, memory_gib=spec.gpu.memory_gib, count=spec.gpu.count or 1)


def declared_model(spec: InstanceSpec) -> ModelSpec | None:
    """The model as registered, with the weight dtype / quantization the launch flags declare."""
    args = {normalize_arg_name(key): value for key, value in spec.engine_args.items()}
    dtype = args.get("dtype")
    quantization = args.get("quantization", args.get("quantize"))
    declared = spec.model
    if declared is None and dtype is None and quantization is None:
        return None
    return ModelSpec(
        name=declared.name if declared else None,
        params_b=declared.parameters_b if declared else None,
        dtype=dtype if isinstance(dtype, str) else None,
        quantization=quantization if isinstance(quantization, str) else None,
    )


class OptimizationService:
    def __init__(
        self,
        *,
        analysis: AnalysisService,
        plans: PlanRepository,
        outcomes: PlanOutcomesOf | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._analysis = analysis
        self._plans = plans
        self._outcomes = outcomes
        self._clock = clock if clock is not None else utc_now

    async def optimize(self, body: OptimizeRequest) -> OptimizationPlan:
        """404 unknown instance, 409 `insufficient_data` as for `POST /analyze`; otherwise a stored plan."""
        evaluation = await self._analysis.evaluate(
            body.instance_id, window_minutes=body.window_minutes, model_name=body.model_name
        )
        spec = evaluation.instance.spec
        window_start = evaluation.analyzed_at - timedelta(minutes=body.window_minutes)
        recent = [w for w in evaluation.timeline if w.ended_at is not None and w.ended_at >= window_start]
        draft = build_plan(
            evaluation.detection.findings,
            evaluation.latest.engine_config,
            engine=spec.engine,
            engine_version=evaluation.latest.engine_version,
            engine_args=spec.engine_args,
            gpu=declared_gpu(spec),
            model=declared_model(spec),
            objective=body.objective,
            constraints=body.constraints,
            figures=evaluation.figures,
            history=recent,
        )
        plan = OptimizationPlan(
            plan_id=f"plan-{uuid.uuid4().hex}",
            instance_id=body.instance_id,
            engine=draft.engine,
            created_at=self._clock(),
            objective=draft.objective,
            constraints=draft.constraints,
            current_config=draft.current_config,
            recommendations=draft.recommendations,
            findings=evaluation.detection.findings,
            summary=summarize(evaluation.detection),
            notes=draft.notes,
        )
        await self._plans.add(plan)
        return plan

    async def get(self, plan_id: str) -> OptimizationPlan:
        plan = await self._plans.get(plan_id)
        if plan is None:
            raise NotFoundError(f"No plan {plan_id!r} is stored.", context={"plan_id": plan_id})
        return plan

    async def get_with_outcomes(self, plan_id: str) -> PlanWithOutcomes:
        """The stored plan and the measured outcomes of the recommendations its workflows executed."""
        plan = await self.get(plan_id)
        outcomes = await self._outcomes(plan) if self._outcomes is not None else []
        return PlanWithOutcomes(**msgspec.structs.asdict(plan), outcomes=outcomes)
