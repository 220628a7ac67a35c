"""Workflow endpoints. Thin: parse, find the actor, call `WorkflowService`, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, PathParameter, QueryParameter, SkipValidation

from performance_agent.errors import ErrorDetail, RequestValidationError
from performance_agent.fleet.schemas import INSTANCE_ID_PATTERN
from performance_agent.openapi_spec import example_body, responses
from performance_agent.security import ApiKeyRing, KeyRingDependency, Role, principal_of
from performance_agent.workflows import examples
from performance_agent.workflows.machine import UserAction, WorkflowStatus
from performance_agent.workflows.schemas import (
    ActionBody,
    ApprovalBody,
    Workflow,
    WorkflowCreate,
    WorkflowEvent,
)
from performance_agent.workflows.service import WorkflowService

__all__ = ("ANONYMOUS", "WorkflowsController", "WorkflowsDependency", "request_actor")

ANONYMOUS = "anonymous"
_START = {"role": Role.operator}
_DECIDE = {"role": Role.approver}

WorkflowIdPath = Annotated[str, PathParameter(min_length=1, max_length=128, description="The workflow's id.")]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Replaying a create with the same key and body returns the first workflow instead of a second.",
    ),
]
IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        max_length=64,
        description="The workflow `version` this action was decided on; another version gets 409 `version_conflict`.",
    ),
]


#: How handlers receive the app's one `WorkflowService` (built by the composition root).
WorkflowsDependency = NamedDependency[SkipValidation[WorkflowService]]


def request_actor(request: Request[Any, Any, Any], key_ring: ApiKeyRing, named: str | None = None) -> str:
    """Who acts: the API key's name with auth on, else the name the body gave, else `anonymous`."""
    if key_ring.enabled:
        principal = principal_of(request.scope, key_ring)
        if principal is not None:
            return principal.name
    return named or ANONYMOUS


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise RequestValidationError(
            "If-Match must carry the workflow's version number.",
            [ErrorDetail(field="header.If-Match", message='expected a version number such as "3"', type="invalid")],
        )
    return int(text)


def _with_etag(workflow: Workflow, status_code: int = 200) -> Response[Workflow]:
    return Response(workflow, status_code=status_code, headers={"ETag": f'"{workflow.version}"'})


_ACTED = responses(200, Workflow, examples.WORKFLOW, "The workflow after the action", 404, 409, 422)
ApprovalData = Annotated[
    ApprovalBody | None, example_body("Approve with a comment (the body may be omitted)", examples.APPROVAL_BODY)
]
ActionData = Annotated[ActionBody | None, example_body("Give a reason (the body may be omitted)", examples.ACTION_BODY)]


class WorkflowsController(Controller):
    path = "/api/v1/workflows"
    tags = ["Workflows"]

    @post(
        "/",
        opt=_START,
        status_code=201,
        operation_id="StartWorkflow",
        summary="Start a gradual rollout of a configuration change",
        responses=responses(201, Workflow, examples.WORKFLOW_STARTED, "The new workflow", 403, 409, 422),
    )
    async def start(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowsDependency,
        key_ring: KeyRingDependency,
        data: Annotated[
            WorkflowCreate, example_body("Roll a flag change out with approvals", examples.WORKFLOW_CREATE)
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Workflow]:
        """Roll `changes`/`env` (or a plan's executable recommendations) out to the instances in stages.

        422 for an invalid body, unknown instances or mixed engines; 409 `workflow_conflict` (with the
        blocking `workflow_id` in `context`) when an instance is already in an active workflow; 403
        `target_not_allowed` for an actuator URL outside PERF_AGENT_WEBHOOK_ALLOWLIST. Without
        `approval.required` the workflow starts in `capturing_baseline`.
        """
        result = await workflows.create(data, actor=request_actor(request, key_ring), idempotency_key=idempotency_key)
        return _with_etag(result.workflow, 201)

    @get(
        "/",
        operation_id="ListWorkflows",
        summary="Workflows, newest first, one page at a time",
        responses=responses(
            200,
            list[Workflow],
            [examples.WORKFLOW_SUMMARY],
            "One page; the next page's cursor is in `X-Next-Cursor` (absent on the last page)",
            422,
        ),
    )
    async def list_workflows(
        self,
        workflows: WorkflowsDependency,
        status: Annotated[WorkflowStatus | None, QueryParameter(description="Only workflows in this status.")] = None,
        instance_id: Annotated[
            str | None,
            QueryParameter(pattern=INSTANCE_ID_PATTERN, description="Only workflows changing this instance."),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500, description="At most this many workflows.")] = 50,
        cursor: Annotated[
            str | None, QueryParameter(max_length=64, description="`X-Next-Cursor` of the previous page.")
        ] = None,
    ) -> Response[list[Workflow]]:
        """Summaries without health windows (read one workflow for its windows)."""
        items, next_cursor = await workflows.list_page(
            status=None if status is None else status.value, instance_id=instance_id, limit=limit, cursor=cursor
        )
        headers = {"X-Next-Cursor": next_cursor} if next_cursor is not None else {}
        return Response(items, headers=headers)

    @get(
        "/{workflow_id:str}",
        operation_id="GetWorkflow",
        summary="One workflow: status, stage, cohorts, baseline, health windows, approvals",
        responses=responses(200, Workflow, examples.WORKFLOW, "The workflow", 404, 422),
    )
    async def get_workflow(self, workflows: WorkflowsDependency, workflow_id: WorkflowIdPath) -> Response[Workflow]:
        """`ETag` carries the version to send back as `If-Match` with an action."""
        workflow, _ = await workflows.get(workflow_id)
        return _with_etag(workflow)

    @get(
        "/{workflow_id:str}/events",
        operation_id="GetWorkflowEvents",
        summary="The workflow's append-only audit trail",
        responses=responses(200, list[WorkflowEvent], examples.EVENTS, "Every event, oldest first", 404, 422),
    )
    async def events(self, workflows: WorkflowsDependency, workflow_id: WorkflowIdPath) -> list[WorkflowEvent]:
        """Creation, every human action (actor, time, comment) and every automatic transition (with its reason)."""
        return await workflows.events(workflow_id)

    async def _decide(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowService,
        key_ring: ApiKeyRing,
        workflow_id: str,
        action: UserAction,
        body: ApprovalBody | ActionBody | None,
        if_match: str | None,
    ) -> Response[Workflow]:
        approver = body.approver if isinstance(body, ApprovalBody) else None
        comment = body.comment if isinstance(body, ApprovalBody) else None
        reason = body.reason if isinstance(body, ActionBody) else None
        workflow = await workflows.act(
            workflow_id,
            action,
            actor=request_actor(request, key_ring, approver),
            comment=comment,
            reason=reason,
            if_match=_version(if_match),
        )
        return _with_etag(workflow)

    @post(
        "/{workflow_id:str}/approve",
        opt=_DECIDE,
        status_code=200,
        operation_id="ApproveWorkflow",
        summary="Approve the start, or the next gated stage",
        responses=_ACTED,
    )
    async def approve(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowsDependency,
        key_ring: KeyRingDependency,
        workflow_id: WorkflowIdPath,
        data: ApprovalData = None,
        if_match: IfMatch = None,
    ) -> Response[Workflow]:
        """Valid in `pending_approval` and `awaiting_approval`. The same actor approving the same gate again
        gets 200 with no second event; anything else not allowed now is 409 `invalid_transition`."""
        return await self._decide(request, workflows, key_ring, workflow_id, UserAction.APPROVE, data, if_match)

    @post(
        "/{workflow_id:str}/reject",
        opt=_DECIDE,
        status_code=200,
        operation_id="RejectWorkflow",
        summary="Reject the start (nothing changes) or the next stage (rolls back)",
        responses=_ACTED,
    )
    async def reject(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowsDependency,
        key_ring: KeyRingDependency,
        workflow_id: WorkflowIdPath,
        data: ApprovalData = None,
        if_match: IfMatch = None,
    ) -> Response[Workflow]:
        """`pending_approval` → `rejected`; `awaiting_approval` → `rolling_back`."""
        return await self._decide(request, workflows, key_ring, workflow_id, UserAction.REJECT, data, if_match)

    @post(
        "/{workflow_id:str}/abort",
        opt=_DECIDE,
        status_code=200,
        operation_id="AbortWorkflow",
        summary="Roll back what changed (cancels when nothing changed yet; releases a failed one)",
        responses=_ACTED,
    )
    async def abort(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowsDependency,
        key_ring: KeyRingDependency,
        workflow_id: WorkflowIdPath,
        data: ActionData = None,
        if_match: IfMatch = None,
    ) -> Response[Workflow]:
        """`pending_approval`/`capturing_baseline` → `cancelled`; `applying`, `monitoring`,
        `awaiting_approval`, `paused` → `rolling_back`; `failed` → `rolled_back` once the instances
        were reverted by hand (a `reason` saying so is required), releasing them."""
        return await self._decide(request, workflows, key_ring, workflow_id, UserAction.ABORT, data, if_match)

    @post(
        "/{workflow_id:str}/cancel",
        opt=_DECIDE,
        status_code=200,
        operation_id="CancelWorkflow",
        summary="Withdraw a workflow before anything changed",
        responses=_ACTED,
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowsDependency,
        key_ring: KeyRingDependency,
        workflow_id: WorkflowIdPath,
        data: ActionData = None,
        if_match: IfMatch = None,
    ) -> Response[Workflow]:
        """`pending_approval`/`capturing_baseline` → `cancelled`."""
        return await self._decide(request, workflows, key_ring, workflow_id, UserAction.CANCEL, data, if_match)

    @post(
        "/{workflow_id:str}/pause",
        opt=_DECIDE,
        status_code=200,
        operation_id="PauseWorkflow",
        summary="Hold the rollout where it is (guardrails keep running)",
        responses=_ACTED,
    )
    async def pause(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowsDependency,
        key_ring: KeyRingDependency,
        workflow_id: WorkflowIdPath,
        data: ActionData = None,
        if_match: IfMatch = None,
    ) -> Response[Workflow]:
        """`monitoring`/`awaiting_approval` → `paused`; a guardrail breach still rolls back."""
        return await self._decide(request, workflows, key_ring, workflow_id, UserAction.PAUSE, data, if_match)

    @post(
        "/{workflow_id:str}/resume",
        opt=_DECIDE,
        status_code=200,
        operation_id="ResumeWorkflow",
        summary="Resume monitoring the current stage",
        responses=_ACTED,
    )
    async def resume(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowsDependency,
        key_ring: KeyRingDependency,
        workflow_id: WorkflowIdPath,
        data: ActionData = None,
        if_match: IfMatch = None,
    ) -> Response[Workflow]:
        """`paused` → `monitoring`: the stage is watched for `duration_s` again; gates still apply."""
        return await self._decide(request, workflows, key_ring, workflow_id, UserAction.RESUME, data, if_match)

    @post(
        "/{workflow_id:str}/retry-rollback",
        opt=_DECIDE,
        status_code=200,
        operation_id="RetryWorkflowRollback",
        summary="Try a failed rollback again",
        responses=_ACTED,
    )
    async def retry_rollback(
        self,
        request: Request[Any, Any, Any],
        workflows: WorkflowsDependency,
        key_ring: KeyRingDependency,
        workflow_id: WorkflowIdPath,
        data: ActionData = None,
        if_match: IfMatch = None,
    ) -> Response[Workflow]:
        """`failed` → `rolling_back`, resending the rollback calls with their original `event_id`s."""
        return await self._decide(request, workflows, key_ring, workflow_id, UserAction.RETRY_ROLLBACK, data, if_match)
