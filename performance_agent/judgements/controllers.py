"""Judgement endpoints. Thin: parse, find the actor, call `JudgementService`, shape the answer.

Roles: creating and stopping a judgement needs `operator` (it makes the agent read servers on a
schedule); reading it and the Flagger hook need only `viewer`, because the hook reads and never
changes anything, so the key a Flagger or Argo Rollouts installation holds can be a read-only one.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, SkipValidation

from performance_agent.judgements import examples
from performance_agent.judgements.schemas import FlaggerCheck, FlaggerHook, Judgement, JudgementCreate
from performance_agent.judgements.service import JudgementService
from performance_agent.openapi_spec import example_body, responses
from performance_agent.security import KeyRingDependency, Role
from performance_agent.workflows.controllers import request_actor

__all__ = ("JudgementsController", "JudgementsDependency")

_OPERATOR = {"role": Role.operator}
JudgementIdPath = Annotated[str, PathParameter(min_length=1, max_length=128, description="The judgement's id.")]

#: How handlers receive the app's one `JudgementService` (built by the composition root).
JudgementsDependency = NamedDependency[SkipValidation[JudgementService]]


class JudgementsController(Controller):
    path = "/api/v1/judgements"
    tags = ["Judgements"]

    @post(
        "/",
        opt=_OPERATOR,
        status_code=201,
        operation_id="StartJudgement",
        summary="Judge a canary cohort against a control cohort in the background",
        responses=responses(201, Judgement, examples.JUDGEMENT_STARTED, "The new judgement", 422),
    )
    async def start(
        self,
        request: Request[Any, Any, Any],
        judgements: JudgementsDependency,
        key_ring: KeyRingDependency,
        data: Annotated[JudgementCreate, example_body("Judge two canaries against six controls", examples.CREATE)],
    ) -> Judgement:
        """For Argo Rollouts and Flagger: they move the traffic, the agent says whether the canary is worse.

        Every `interval_s` the agent reads both cohorts and adds the window's evidence; `ok` stays
        true until the evidence says the canary is slower than tolerated (then `verdict: fail` for
        good). 422 for unknown, repeated or shared instances.
        """
        return await judgements.create(data, actor=request_actor(request, key_ring))

    @get(
        "/{judgement_id:str}",
        operation_id="GetJudgement",
        summary="A judgement's verdict, `ok` flag and latest evidence (an Argo Rollouts `web` metric)",
        responses=responses(200, Judgement, examples.JUDGEMENT, "The judgement", 404, 422),
    )
    async def get_judgement(self, judgements: JudgementsDependency, judgement_id: JudgementIdPath) -> Judgement:
        """Point an Argo Rollouts `web` metric here with `jsonPath: "{$.ok}"` and `successCondition: result == true`."""
        return await judgements.get(judgement_id)

    @delete(
        "/{judgement_id:str}",
        opt=_OPERATOR,
        status_code=200,
        operation_id="StopJudgement",
        summary="Stop a judgement now, with its final verdict",
        responses=responses(200, Judgement, examples.JUDGEMENT_STOPPED, "The stopped judgement", 404, 409, 422),
    )
    async def stop(self, judgements: JudgementsDependency, judgement_id: JudgementIdPath) -> Judgement:
        """`pass` if it never failed and the canary served `judge.min_canary_requests`; else `inconclusive` (or `fail`).

        409 `judgement_finished` when it had already stopped.
        """
        return await judgements.stop(judgement_id)

    @post(
        "/{judgement_id:str}/flagger",
        status_code=200,
        operation_id="FlaggerJudgementHook",
        summary="A Flagger `rollout` webhook: 2xx while the canary has not failed, 409 once it has",
        responses=responses(200, FlaggerCheck, examples.FLAGGER_CHECK, "The canary has not failed", 404, 409, 422),
    )
    async def flagger(
        self,
        judgements: JudgementsDependency,
        judgement_id: JudgementIdPath,
        data: Annotated[FlaggerHook | None, example_body("What Flagger posts", examples.FLAGGER_HOOK)] = None,
    ) -> FlaggerCheck:
        """Flagger reads only the status: 200 passes the check, 409 `judgement_failed` fails it (and 404 too)."""
        return await judgements.flagger(judgement_id)
