"""The stored workflow document and the one function that moves it from status to status.

Why a document: a workflow is read and written whole (status, stage, deadlines, counters,
approvals), always under one optimistic version check, so one JSON column is simpler and safer
than twenty; the columns the database must search (status, due time, instances) are kept beside
it by the repository. Times are epoch seconds from the injectable clock, so a restarted agent
recomputes every deadline from what is stored (persist the state, never the timer, as Argo Rollouts'
`rollout/pause.go` does; docs/sources.md).

`transition` is the only way a status changes: it fires the machine on a throwaway record,
copies the result back, and sets the deadlines the new status needs. It does no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import msgspec

from performance_agent.judge import JudgePlan, JudgeSettings, JudgeState
from performance_agent.workflows.cohorts import cohorts_for_count
from performance_agent.workflows.gate import StageProgress
from performance_agent.workflows.machine import WorkflowRecord, WorkflowStatus, apply_trigger, is_terminal
from performance_agent.workflows.policy import Guardrails, MonitorPolicy
from performance_agent.workflows.schemas import (
    ActuatorSpec,
    ApprovalRecord,
    ApprovalSpec,
    BaselineSummary,
    FlagValue,
    StageEffects,
)

if TYPE_CHECKING:
    from performance_agent.workflows.cohorts import Cohorts

__all__ = (
    "EVENT_NAMESPACE",
    "EventDraft",
    "TransitionOutcome",
    "WorkflowDoc",
    "apply_event_id",
    "cohorts_of",
    "outbox_event_id",
    "transition",
)

#: Namespace of the actuator `event_id`s (uuid5 of workflow id, action and stage index).
EVENT_NAMESPACE = uuid.UUID("6f1c2a8e-4b7d-5e3f-9a10-2c4b6d8e0f13")

_S = WorkflowStatus
_WATCHED = frozenset({_S.MONITORING, _S.AWAITING_APPROVAL, _S.PAUSED})


class WorkflowDoc(msgspec.Struct, kw_only=True):
    """Everything one workflow is; `version` lives in its own column and is not part of the document."""

    workflow_id: str
    engine: str
    instance_ids: list[str]
    changes: dict[str, FlagValue]
    env: dict[str, str | None]
    previous: dict[str, dict[str, FlagValue] | None]
    plan_id: str | None = None
    recommendation_ids: list[str] | None = None
    description: str | None = None
    stages: list[int]
    approval: ApprovalSpec
    monitor: MonitorPolicy
    guardrails: Guardrails
    #: Absent (null) from documents stored before the sequential judge: see `judge_settings`.
    judge: JudgeSettings | None = None
    actuator: ActuatorSpec
    #: The actuator's URL is `PERF_AGENT_WORKFLOW_ACTUATOR_URL` (a secret setting): never shown.
    actuator_url_from_settings: bool = False
    created_by: str
    created_at: float
    updated_at: float
    status: str
    status_reason: str | None = None
    status_since: float
    stage_index: int = 0
    changed_count: int = 0
    finished_at: float | None = None
    next_due_at: float | None = None
    approval_deadline: float | None = None
    baseline_started_at: float | None = None
    baseline_deadline: float | None = None
    baseline_marks: dict[str, float] = msgspec.field(default_factory=dict)
    baseline: BaselineSummary | None = None
    stage_started_at: float | None = None
    progress: StageProgress | None = None
    #: The judge's tests, fixed at baseline capture, and its evidence carried across windows and
    #: stages. Absent from workflows stored before the sequential judge: the next window plans them.
    judge_plan: JudgePlan | None = None
    judge_state: JudgeState | None = None
    window_started_at: float | None = None
    window_marks: dict[str, float] = msgspec.field(default_factory=dict)
    next_window_at: float | None = None
    approvals: list[ApprovalRecord] = msgspec.field(default_factory=list)
    #: Measured effects, one entry per passed stage (absent from documents stored before they existed).
    effects: list[StageEffects] = msgspec.field(default_factory=list)

    @property
    def judge_settings(self) -> JudgeSettings:
        """The judge this workflow runs with; a workflow stored before the judge keeps its `min_samples` as floor.

        Its old gate needed `min_samples` requests in every window, so a pooled floor of the same
        number lets it advance at least as it did.
        """
        if self.judge is not None:
            return self.judge
        return JudgeSettings(min_canary_requests=self.guardrails.min_samples)

    @property
    def status_enum(self) -> WorkflowStatus:
        return WorkflowStatus(self.status)


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An audit event before the repository numbers it."""

    type: Literal["created", "action", "transition"]
    action: str
    from_status: str | None
    to_status: str
    actor: str
    at: float
    stage_index: int
    comment: str | None = None
    reason: str | None = None
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TransitionOutcome:
    from_status: WorkflowStatus
    to_status: WorkflowStatus
    from_stage_index: int
    status_since: float
    stage_started_at: float | None


def cohorts_of(doc: WorkflowDoc) -> Cohorts:
    return cohorts_for_count(doc.instance_ids, doc.changed_count)


def outbox_event_id(workflow_id: str, action: str, stage_index: int) -> str:
    """Stable across retries and restarts: the same stage's call always carries the same id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{workflow_id}/{action}/{stage_index}"))


def apply_event_id(workflow_id: str, stage_index: int) -> str:
    return outbox_event_id(workflow_id, "apply", stage_index)


def _record(doc: WorkflowDoc) -> WorkflowRecord:
    return WorkflowRecord(
        status=WorkflowStatus(doc.status),
        stages=list(doc.stages),
        instance_count=len(doc.instance_ids),
        stage_index=doc.stage_index,
        changed_count=doc.changed_count,
        stage_gates=frozenset(doc.approval.stage_gates),
        status_reason=doc.status_reason,
    )


def _reset_window(doc: WorkflowDoc) -> None:
    doc.window_started_at = None
    doc.window_marks = {}
    doc.next_window_at = None


def _on_enter(doc: WorkflowDoc, source: WorkflowStatus, now: float) -> None:
    status = doc.status_enum
    doc.next_due_at = now
    if status not in (_S.PENDING_APPROVAL, _S.AWAITING_APPROVAL):
        doc.approval_deadline = None
    if status is _S.CAPTURING_BASELINE:
        doc.baseline_started_at = None
        doc.baseline_deadline = None
        doc.baseline_marks = {}
    elif status is _S.APPLYING:
        doc.stage_started_at = now
        doc.progress = None
        _reset_window(doc)
    elif status is _S.MONITORING:
        monitor = doc.monitor
        if source is _S.APPLYING:
            warmup_until = now + monitor.warmup_s
            doc.progress = StageProgress(
                monitor_started_at=now, warmup_until=warmup_until, stage_deadline=now + monitor.duration_s
            )
            doc.next_due_at = warmup_until
        else:  # resumed: re-soak the stage from now, without a warm-up (nothing restarted)
            doc.progress = StageProgress(
                monitor_started_at=now, warmup_until=now, stage_deadline=now + monitor.duration_s
            )
        _reset_window(doc)
    elif status is _S.AWAITING_APPROVAL:
        timeout = doc.approval.timeout_s
        doc.approval_deadline = None if timeout is None else now + timeout
    elif status is _S.PENDING_APPROVAL:
        timeout = doc.approval.timeout_s
        doc.approval_deadline = None if timeout is None else now + timeout
        doc.next_due_at = doc.approval_deadline
    elif status is _S.ROLLING_BACK:
        _reset_window(doc)
    if status is _S.FAILED or is_terminal(status):
        doc.next_due_at = None
        _reset_window(doc)
        if is_terminal(status):
            doc.finished_at = now
    if status in _WATCHED and source in _WATCHED and doc.next_window_at is not None:
        doc.next_due_at = min(now, doc.next_window_at)


def transition(doc: WorkflowDoc, trigger: str, *, now: float, reason: str | None = None) -> TransitionOutcome:
    """Fire `trigger` on the document (raises `InvalidTransition`, leaving it untouched) and schedule the new status."""
    record = _record(doc)
    source = record.status
    from_stage = doc.stage_index
    previous_since, previous_stage_start = doc.status_since, doc.stage_started_at
    apply_trigger(record, trigger, reason=reason)
    doc.status = record.status.value
    doc.status_reason = record.status_reason
    doc.stage_index = record.stage_index
    doc.changed_count = record.changed_count
    doc.updated_at = now
    if record.status is not source:
        doc.status_since = now
    _on_enter(doc, source, now)
    return TransitionOutcome(source, record.status, from_stage, previous_since, previous_stage_start)
