"""The workflow use cases behind the API: create, read, list, audit trail and human actions.

Controllers stay thin; the reconciler (which does the automatic work) shares the repository and
`state.transition`, never this class. A human action is applied to the document read at some
version and saved only if that version is still current. A concurrent write that did not move
the workflow (the reconciler recording a health window) is retried transparently; one that did
(another action, a rollback) makes this action a 409, so of two concurrent actions exactly one
wins.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import uuid
from typing import TYPE_CHECKING

import msgspec

from performance_agent.clock import utc
from performance_agent.errors import ConflictError, ErrorDetail, NotFoundError, RequestValidationError
from performance_agent.workflows.machine import (
    InvalidTransition,
    UserAction,
    WorkflowStatus,
    allowed_actions,
    is_terminal,
)
from performance_agent.workflows.plans import PlanLookup, resolve_plan_changes
from performance_agent.workflows.ports import IdempotencyClaim, IdempotencyMismatch, InstanceBusy, VersionConflict
from performance_agent.workflows.schemas import Workflow
from performance_agent.workflows.state import EventDraft, TransitionOutcome, WorkflowDoc, transition
from performance_agent.workflows.validation import CreateDefaults, validate_create
from performance_agent.workflows.views import to_view

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.workflows.observability import WorkflowMetrics
    from performance_agent.workflows.ports import StoredWorkflow, WorkflowRepository
    from performance_agent.workflows.schemas import FlagValue, WorkflowCreate, WorkflowEvent

__all__ = ("ACTION_RETRIES", "WINDOWS_SHOWN", "CreateResult", "WorkflowService", "decode_cursor", "encode_cursor")

#: How many times an action is re-applied after a concurrent write that did not move the workflow.
ACTION_RETRIES = 5
#: Newest health windows shown by `GET /workflows/{id}`.
WINDOWS_SHOWN = 500
_request_encoder = msgspec.json.Encoder(order="deterministic")


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"wf:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor continues after; a cursor we did not issue is a 422 on `query.cursor`."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "wf" or not number.isdigit():
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise RequestValidationError(
            "The cursor is not one this API returned in X-Next-Cursor.",
            [ErrorDetail(field="query.cursor", message="not a cursor issued by this API", type="invalid")],
        ) from None


class CreateResult(msgspec.Struct, kw_only=True):
    workflow: Workflow
    created: bool


class WorkflowService:
    def __init__(
        self,
        *,
        workflows: WorkflowRepository,
        instances: InstanceRepository,
        defaults: CreateDefaults,
        plans: PlanLookup | None,
        metrics: WorkflowMetrics,
        clock: Callable[[], float],
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._metrics = metrics
        self._workflows = workflows
        self._instances = instances
        self._defaults = defaults
        self._plans = plans
        self._clock = clock
        self._on_change = on_change

    async def _require(self, workflow_id: str) -> StoredWorkflow:
        stored = await self._workflows.get(workflow_id)
        if stored is None:
            raise NotFoundError(f"No workflow {workflow_id!r}.", context={"workflow_id": workflow_id})
        return stored

    async def _view(self, stored: StoredWorkflow) -> Workflow:
        windows = await self._workflows.windows(stored.doc.workflow_id, WINDOWS_SHOWN)
        return to_view(stored.doc, stored.version, windows)

    # ------------------------------------------------------------------------------ create
    async def create(self, body: WorkflowCreate, *, actor: str, idempotency_key: str | None) -> CreateResult:
        changes: Mapping[str, FlagValue] = body.changes or {}
        env: Mapping[str, str | None] = body.env or {}
        plan_engine = None
        if body.plan_id is not None and body.changes is None and body.env is None:
            changes, env, plan_engine = await resolve_plan_changes(self._plans, body)
        registered = {instance_id: await self._instances.get(instance_id) for instance_id in set(body.instance_ids)}
        now = self._clock()
        doc = validate_create(
            body,
            changes=changes,
            env=env,
            registered=registered,
            defaults=self._defaults,
            workflow_id=str(uuid.uuid4()),
            actor=actor,
            now=now,
        )
        if plan_engine and plan_engine != doc.engine:
            raise RequestValidationError(
                f"Plan {body.plan_id} is for {plan_engine}, but the instances run {doc.engine}.",
                [
                    ErrorDetail(
                        field="body.plan_id", message=f"a {plan_engine} plan cannot change {doc.engine}", type="invalid"
                    )
                ],
            )
        claim = None
        if idempotency_key is not None:
            digest = hashlib.sha256(_request_encoder.encode(body)).hexdigest()
            claim = IdempotencyClaim(scope=actor, key=idempotency_key, request_hash=digest)
        event = EventDraft(
            type="created",
            action="create",
            from_status=None,
            to_status=doc.status,
            actor=actor,
            at=now,
            stage_index=0,
            comment=body.description,
        )
        try:
            stored, created = await self._workflows.create(doc, event, claim)
        except InstanceBusy as busy:
            raise ConflictError(
                f"Instance {busy.instance_id!r} is already part of active workflow {busy.workflow_id}.",
                error="workflow_conflict",
                context={"workflow_id": busy.workflow_id, "instance_id": busy.instance_id},
            ) from None
        except IdempotencyMismatch as mismatch:
            raise ConflictError(
                "This Idempotency-Key was already used with a different request body.",
                error="idempotency_key_reused",
                context={"workflow_id": mismatch.workflow_id},
            ) from None
        if created:
            self._metrics.observe_transition(doc, None, trigger="create")
            if self._on_change is not None:
                await self._on_change()
        return CreateResult(workflow=await self._view(stored), created=created)

    # ------------------------------------------------------------------------------- reads
    async def get(self, workflow_id: str) -> tuple[Workflow, int]:
        stored = await self._require(workflow_id)
        return await self._view(stored), stored.version

    async def list_page(
        self, *, status: str | None, instance_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Workflow], str | None]:
        before = decode_cursor(cursor) if cursor is not None else None
        found = await self._workflows.page(status=status, instance_id=instance_id, limit=limit + 1, before_seq=before)
        page = found[:limit]
        next_cursor = encode_cursor(page[-1].seq) if len(found) > limit and page else None
        return [to_view(item.doc, item.version, None) for item in page], next_cursor

    async def events(self, workflow_id: str) -> list[WorkflowEvent]:
        await self._require(workflow_id)
        return await self._workflows.events(workflow_id)

    # ----------------------------------------------------------------------------- actions
    async def act(
        self,
        workflow_id: str,
        action: UserAction,
        *,
        actor: str,
        comment: str | None = None,
        reason: str | None = None,
        if_match: int | None = None,
    ) -> Workflow:
        stored = await self._require(workflow_id)
        first_seen = (stored.doc.status, stored.doc.stage_index, stored.version)
        for _ in range(ACTION_RETRIES):
            doc = stored.doc
            if self._is_repeated_approval(doc, action, actor):
                return await self._view(stored)
            if if_match is not None and if_match != stored.version:
                raise _version_conflict(doc, stored.version, if_match)
            if action is UserAction.ABORT and doc.status == WorkflowStatus.FAILED and not reason:
                raise RequestValidationError(
                    "Aborting a failed workflow releases its instances as they are now; "
                    "say in `reason` what was done by hand to revert them.",
                    [ErrorDetail(field="body.reason", message="required to abort a failed workflow", type="missing")],
                )
            try:
                outcome = self._apply(doc, action, actor=actor, comment=comment, reason=reason)
            except InvalidTransition as invalid:
                raise ConflictError(
                    str(invalid),
                    error="invalid_transition",
                    context={
                        "workflow_id": workflow_id,
                        "status": doc.status,
                        "action": action.value,
                        "allowed_actions": invalid.allowed_actions,
                    },
                ) from None
            moved_by, events = outcome
            try:
                version = await self._workflows.save(doc, stored.version, events)
            except VersionConflict:
                fresh = await self._require(workflow_id)
                moved = (fresh.doc.status, fresh.doc.stage_index) != first_seen[:2]
                if moved or if_match is not None:
                    raise _version_conflict(fresh.doc, fresh.version, first_seen[2]) from None
                stored = fresh
                continue
            self._metrics.observe_transition(doc, moved_by, trigger=action.value)
            if self._on_change is not None:
                await self._on_change()
            return await self._view(dataclasses.replace(stored, doc=doc, version=version))
        fresh = await self._require(workflow_id)
        raise _version_conflict(fresh.doc, fresh.version, first_seen[2])

    @staticmethod
    def _is_repeated_approval(doc: WorkflowDoc, action: UserAction, actor: str) -> bool:
        """The same actor approving the gate they already approved: answered 200, recorded once.

        Only while the workflow is still under way: approving a finished one (cancelled, rolled back...)
        approves nothing, so it is the 409 of any other action its status refuses.
        """
        if action is not UserAction.APPROVE or "approve" in allowed_actions(doc.status) or is_terminal(doc.status):
            return False
        return bool(doc.approvals) and doc.approvals[-1].actor == actor

    def _apply(
        self, doc: WorkflowDoc, action: UserAction, *, actor: str, comment: str | None, reason: str | None
    ) -> tuple[TransitionOutcome, list[EventDraft]]:
        from performance_agent.workflows.schemas import ApprovalRecord

        now = self._clock()
        explanation = reason or comment
        status_reason = (
            None
            if action is UserAction.APPROVE
            else f"{action.value} by {actor}" + (f": {explanation}" if explanation else "")
        )
        outcome = transition(doc, action.trigger, now=now, reason=status_reason)
        details: dict[str, object] = {}
        if action is UserAction.APPROVE:
            gate = 0 if outcome.from_status is WorkflowStatus.PENDING_APPROVAL else doc.stage_index
            doc.approvals.append(ApprovalRecord(gate=gate, actor=actor, at=utc(now), comment=comment))
            details["gate"] = gate
        event = EventDraft(
            type="action",
            action=action.value,
            from_status=outcome.from_status.value,
            to_status=doc.status,
            actor=actor,
            at=now,
            stage_index=doc.stage_index,
            comment=comment,
            reason=reason,
            details=details,
        )
        return outcome, [event]


def _version_conflict(doc: WorkflowDoc, version: int, expected: int) -> ConflictError:
    return ConflictError(
        f"Workflow {doc.workflow_id} changed while this action was applied (now {doc.status}, version {version}); "
        "read it again and retry if the action still makes sense.",
        error="version_conflict",
        context={
            "workflow_id": doc.workflow_id,
            "status": doc.status,
            "version": version,
            "expected_version": expected,
            "allowed_actions": allowed_actions(doc.status),
        },
    )
