"""The rollout state machine: one `transitions` definition shared by every workflow.

Why it looks like this (`transitions` 0.9.3 README and transitions#434/#146; docs/sources.md, "Rollout design"):
- One module-level `Machine(model=None)`; a workflow record is driven as an *unregistered* model
  (`machine.events[name].trigger(record)`), so loading 1,000 workflows builds nothing and nothing
  is kept alive by the machine. `add_model` works on the record too, but binds 50 methods per
  record and checks membership in a list, so 1,000 registrations cost ~0.2 CPU-s and 2,000 ~0.5 s:
  not something to repeat on every reconciler tick.
- `auto_transitions=False`, so no `to_<status>()` escape hatch bypasses the workflow.
- Callbacks only touch the record in memory and run *before* the status changes: `transitions`
  never undoes a status change when a later callback raises. Persisting the result (with its
  audit event, in one transaction) is the caller's job, after `apply_trigger` returns.
- Stages are data (`stages`, `stage_index`), not states, so one machine serves every plan.
- `changed_count` counts the instances an apply call was *sent* for, not only acknowledged ones:
  a timed-out call may still have landed, so rollback must revert them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transitions import Machine, MachineError

from performance_agent.workflows.cohorts import DEFAULT_STAGES, changed_count_after_rollback_step, stage_target_count
from performance_agent.workflows.machine_record import (
    InternalTrigger,
    InvalidTransition,
    UserAction,
    WorkflowRecord,
    WorkflowStatus,
    record_problems,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from transitions import EventData

    _Check = Callable[[EventData], bool]
    _Effect = Callable[[EventData], None]

__all__ = (
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "WORKFLOW_MACHINE",
    "InternalTrigger",
    "InvalidTransition",
    "UserAction",
    "WorkflowRecord",
    "WorkflowStatus",
    "allowed_actions",
    "apply_trigger",
    "initial_status",
    "is_active",
    "is_terminal",
    "new_workflow_record",
    "record_problems",
)


# ---- conditions and effects: in-memory only, each receives the transitions EventData ----


def _record(event: EventData) -> WorkflowRecord:
    model = event.model
    if not isinstance(model, WorkflowRecord):
        raise TypeError(f"the workflow machine drives WorkflowRecord models, got {type(model).__name__}")
    return model


def is_last_stage(event: EventData) -> bool:
    record = _record(event)
    return record.stage_index == len(record.stages) - 1


def next_stage_gated(event: EventData) -> bool:
    record = _record(event)
    return record.stage_index + 1 < len(record.stages) and record.stage_index + 1 in record.stage_gates


def next_stage_ungated(event: EventData) -> bool:
    record = _record(event)
    return record.stage_index + 1 < len(record.stages) and record.stage_index + 1 not in record.stage_gates


def has_changed_instances(event: EventData) -> bool:
    return _record(event).changed_count > 0


def nothing_left_changed(event: EventData) -> bool:
    return _record(event).changed_count == 0


def _send_stage(record: WorkflowRecord, stage_index: int) -> None:
    total = stage_target_count(record.stages[stage_index], record.instance_count)
    record.stage_index = stage_index
    record.changed_count = total


def _begin_first_stage(event: EventData) -> None:
    _send_stage(_record(event), 0)


def _begin_next_stage(event: EventData) -> None:
    record = _record(event)
    _send_stage(record, record.stage_index + 1)


def _released_by_hand(event: EventData) -> None:
    """An approver aborting a failed rollout states that the instances were reverted by hand."""
    _record(event).changed_count = 0


def _revert_latest_group(event: EventData) -> None:
    record = _record(event)
    record.changed_count = changed_count_after_rollback_step(record.stages, record.instance_count, record.changed_count)


_S = WorkflowStatus
_ROLLBACK_SOURCES = (_S.MONITORING, _S.AWAITING_APPROVAL, _S.PAUSED)


def _rule(
    trigger: str,
    sources: Sequence[WorkflowStatus],
    dest: WorkflowStatus,
    conditions: Sequence[_Check] = (),
    effects: Sequence[_Effect] = (),
) -> dict[str, object]:
    return {
        "trigger": trigger,
        "source": list(sources),
        "dest": dest,
        "conditions": list(conditions),
        "before": list(effects),
    }


_USER = UserAction
_INTERNAL = InternalTrigger
_TRANSITION_TABLE: tuple[dict[str, object], ...] = (
    # human actions
    _rule(_USER.APPROVE.trigger, [_S.PENDING_APPROVAL], _S.CAPTURING_BASELINE),
    _rule(_USER.APPROVE.trigger, [_S.AWAITING_APPROVAL], _S.APPLYING, effects=[_begin_next_stage]),
    _rule(_USER.REJECT.trigger, [_S.PENDING_APPROVAL], _S.REJECTED),
    _rule(_USER.REJECT.trigger, [_S.AWAITING_APPROVAL], _S.ROLLING_BACK),
    _rule(_USER.ABORT.trigger, [_S.PENDING_APPROVAL, _S.CAPTURING_BASELINE], _S.CANCELLED),
    _rule(_USER.ABORT.trigger, [_S.APPLYING, *_ROLLBACK_SOURCES], _S.ROLLING_BACK),
    _rule(_USER.CANCEL.trigger, [_S.PENDING_APPROVAL, _S.CAPTURING_BASELINE], _S.CANCELLED),
    _rule(_USER.PAUSE.trigger, [_S.MONITORING, _S.AWAITING_APPROVAL], _S.PAUSED),
    # Paused by the A/A check, before anything changed: resuming captures the baseline again.
    _rule(_USER.RESUME.trigger, [_S.PAUSED], _S.CAPTURING_BASELINE, conditions=[nothing_left_changed]),
    _rule(_USER.RESUME.trigger, [_S.PAUSED], _S.MONITORING),
    _rule(_USER.RETRY_ROLLBACK.trigger, [_S.FAILED], _S.ROLLING_BACK),
    # the way out when retrying cannot succeed: instances fixed by hand, released with a reason
    _rule(_USER.ABORT.trigger, [_S.FAILED], _S.ROLLED_BACK, effects=[_released_by_hand]),
    # reconciler triggers
    _rule(_INTERNAL.BASELINE_READY, [_S.CAPTURING_BASELINE], _S.APPLYING, effects=[_begin_first_stage]),
    _rule(_INTERNAL.BASELINE_FAILED, [_S.CAPTURING_BASELINE], _S.FAILED),
    _rule(_INTERNAL.BASELINE_SUSPECT, [_S.CAPTURING_BASELINE], _S.PAUSED),
    _rule(_INTERNAL.STAGE_APPLIED, [_S.APPLYING], _S.MONITORING),
    _rule(_INTERNAL.APPLY_FAILED, [_S.APPLYING], _S.ROLLING_BACK),
    _rule(_INTERNAL.ANALYSIS_PASSED, [_S.MONITORING], _S.COMPLETED, conditions=[is_last_stage]),
    _rule(_INTERNAL.ANALYSIS_PASSED, [_S.MONITORING], _S.AWAITING_APPROVAL, conditions=[next_stage_gated]),
    _rule(
        _INTERNAL.ANALYSIS_PASSED,
        [_S.MONITORING],
        _S.APPLYING,
        conditions=[next_stage_ungated],
        effects=[_begin_next_stage],
    ),
    _rule(_INTERNAL.ANALYSIS_FAILED, _ROLLBACK_SOURCES, _S.ROLLING_BACK),
    _rule(_INTERNAL.INCONCLUSIVE_TOO_LONG, [_S.MONITORING], _S.PAUSED),
    _rule(_INTERNAL.APPROVAL_TIMEOUT, [_S.PENDING_APPROVAL], _S.CANCELLED),
    _rule(_INTERNAL.APPROVAL_TIMEOUT, [_S.AWAITING_APPROVAL], _S.ROLLING_BACK),
    _rule(
        _INTERNAL.ROLLBACK_STEP_DONE,
        [_S.ROLLING_BACK],
        _S.ROLLING_BACK,
        conditions=[has_changed_instances],
        effects=[_revert_latest_group],
    ),
    _rule(_INTERNAL.ROLLBACK_COMPLETE, [_S.ROLLING_BACK], _S.ROLLED_BACK, conditions=[nothing_left_changed]),
    _rule(_INTERNAL.ROLLBACK_FAILED, [_S.ROLLING_BACK], _S.FAILED),
)
"""The contract of issue 5 §1/§6 (docs/rollout.md), with the triggers of docs/rollout.md where the issue is silent."""

_TERMINAL = frozenset({_S.REJECTED, _S.CANCELLED, _S.ROLLED_BACK, _S.COMPLETED})

WORKFLOW_MACHINE = Machine(
    model=None,
    states=[{"name": status, "final": status in _TERMINAL} for status in WorkflowStatus],
    transitions=_TRANSITION_TABLE,
    initial=None,
    auto_transitions=False,
    send_event=True,
    queued=False,
    model_attribute="status",
    name="workflow",
)

TERMINAL_STATUSES: frozenset[WorkflowStatus] = frozenset(
    s for s in WorkflowStatus if WORKFLOW_MACHINE.get_state(s).final
)
ACTIVE_STATUSES: frozenset[WorkflowStatus] = frozenset(WorkflowStatus) - TERMINAL_STATUSES

_USER_ACTION_BY_TRIGGER = {action.trigger: action for action in UserAction}
_ALLOWED_ACTIONS: dict[WorkflowStatus, list[str]] = {
    status: sorted(
        _USER_ACTION_BY_TRIGGER[name].value
        for name in WORKFLOW_MACHINE.get_triggers(status)
        if name in _USER_ACTION_BY_TRIGGER
    )
    for status in WorkflowStatus
}


def allowed_actions(status: WorkflowStatus | str) -> list[str]:
    """User actions accepted in `status`, in API spelling (`retry-rollback`), sorted; a fresh list each call."""
    return list(_ALLOWED_ACTIONS[WorkflowStatus(status)])


def is_terminal(status: WorkflowStatus | str) -> bool:
    return WorkflowStatus(status) in TERMINAL_STATUSES


def is_active(status: WorkflowStatus | str) -> bool:
    """`failed` counts as active: its instances may be half reverted, so they stay locked to it."""
    return WorkflowStatus(status) in ACTIVE_STATUSES


def initial_status(approval_required: bool) -> WorkflowStatus:
    return WorkflowStatus.PENDING_APPROVAL if approval_required else WorkflowStatus.CAPTURING_BASELINE


def new_workflow_record(
    instance_count: int,
    stages: Sequence[int] = DEFAULT_STAGES,
    stage_gates: Collection[int] = (),
    approval_required: bool = False,
) -> WorkflowRecord:
    return WorkflowRecord(
        status=initial_status(approval_required),
        stages=list(stages),
        instance_count=instance_count,
        stage_gates=frozenset(stage_gates),
    )


def _trigger_name(trigger: str) -> str:
    name = str(trigger).replace("-", "_")
    if name not in WORKFLOW_MACHINE.events:
        raise ValueError(f"unknown workflow trigger {trigger!r}")
    return name


def apply_trigger(record: WorkflowRecord, trigger: str, *, reason: str | None = None) -> WorkflowStatus:
    """Fire a user action or reconciler trigger on `record` in memory and return its new status.

    `reason` explains the new status (why it paused, failed or rolls back) and lands in
    `record.status_reason`. Both spellings of user actions are accepted (`retry-rollback`,
    `retry_rollback`). Raises InvalidTransition, leaving the record untouched, when the status does
    not accept the trigger or its condition does not hold (e.g. `rollback_complete` while instances
    are still changed); raises ValueError for a name the machine does not know at all.
    """
    name = _trigger_name(trigger)
    public_name = _USER_ACTION_BY_TRIGGER[name].value if name in _USER_ACTION_BY_TRIGGER else name
    status = record.status
    try:
        moved = WORKFLOW_MACHINE.events[name].trigger(record)
    except MachineError:
        raise InvalidTransition(public_name, status, allowed_actions(status)) from None
    if not moved:
        raise InvalidTransition(public_name, status, allowed_actions(status), detail="its condition does not hold")
    # Noted only once the transition succeeded, so a refused or failing trigger leaves the record untouched.
    # A status change always replaces the reason; a self-transition keeps it unless given a new one.
    if record.status is not status or reason is not None:
        record.status_reason = reason
    return record.status
