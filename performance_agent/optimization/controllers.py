"""Optimize endpoints: build and store a plan, read it back. Thin: parse, call the service, answer."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, SkipValidation

from performance_agent.openapi_spec import example_body, responses
from performance_agent.optimization.api import PLAN_ID_PATTERN, OptimizeRequest
from performance_agent.optimization.examples import optimize_request_example, plan_example
from performance_agent.optimization.schemas import OptimizationPlan, PlanWithOutcomes
from performance_agent.optimization.service import OptimizationService
from performance_agent.security import Role

__all__ = ("OptimizeController",)

#: How handlers receive the app's one `OptimizationService` (built by the composition root).
OptimizationDependency = NamedDependency[SkipValidation[OptimizationService]]

_PLAN_EXAMPLE = plan_example()


class OptimizeController(Controller):
    path = "/api/v1/optimize"
    tags = ["Optimization"]

    @post(
        "/",
        opt={"role": Role.operator},
        status_code=200,
        operation_id="OptimizeInstance",
        summary="Build and store an engine-specific tuning plan",
        responses=responses(200, OptimizationPlan, _PLAN_EXAMPLE, "The stored plan.", 404, 409, 422),
    )
    async def optimize(
        self,
        optimization: OptimizationDependency,
        data: Annotated[OptimizeRequest, example_body("Balanced, low quality risk", optimize_request_example())],
    ) -> OptimizationPlan:
        """Analyse the instance's last `window_minutes` and plan changes for its findings.

        `objective` defaults to `balanced`, `constraints` to `{"allow_quantization": true,
        "max_quality_risk": "low"}`. Each recommendation lists `changes` (flags spelt as the
        engine's CLI expects), `env` (settings that are environment variables), the findings it
        `addresses`, an `estimated_impact` range with its `assumptions`, `risk`, and whether it is
        `executable` by a rollout workflow. 404 unknown instance; 409 `insufficient_data` as for
        `POST /analyze`.
        """
        return await optimization.optimize(data)

    @get(
        "/{plan_id:str}",
        operation_id="GetPlan",
        summary="A stored tuning plan",
        responses=responses(
            200,
            PlanWithOutcomes,
            {**_PLAN_EXAMPLE, "outcomes": []},
            "The plan as it was stored, with the measured outcomes of its executed recommendations.",
            404,
            422,
        ),
    )
    async def get_plan(
        self,
        optimization: OptimizationDependency,
        plan_id: Annotated[str, PathParameter(pattern=PLAN_ID_PATTERN, description="`plan-` and 32 hex digits.")],
    ) -> PlanWithOutcomes:
        """The plan exactly as `POST /optimize` stored it (plans never change; rollouts start from them).

        `outcomes` lists, for every rollout workflow started from the plan and every stage it
        passed, each predicted impact of each executed recommendation against the effect the
        stage measured: `outcome` `within`, `below` or `above` the predicted range (the measured
        relative change's confidence interval excludes the range on that side), or null with a
        `reason` when the impact has no measured counterpart or could not be measured.
        """
        return await optimization.get_with_outcomes(plan_id)
