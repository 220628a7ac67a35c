"""The vocabulary of a rollout workflow: statuses, actions, the record the machine drives, and its errors.

Split from `machine.py` so the persistence layer and the API can read these types without the
transition table; `machine.py` re-exports all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from performance_agent.workflows.cohorts import stage_gate_problems, stage_problems, stage_target_count

__all__ = (
    "InternalTrigger",
    "InvalidTransition",
    "UserAction",
    "WorkflowRecord",
    "WorkflowStatus",
    "record_problems",
)


class WorkflowStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    CAPTURING_BASELINE = "capturing_baseline"
    APPLYING = "applying"
    MONITORING = "monitoring"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"
    FAILED = "failed"


class UserAction(StrEnum):
    """What a human may ask for; the value is the API spelling (`POST /workflows/{id}/<value>`)."""

    APPROVE = "approve"
    REJECT = "reject"
    ABORT = "abort"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY_ROLLBACK = "retry-rollback"

    @property
    def trigger(self) -> str:
        """Python identifiers cannot hold '-', so the machine's trigger spells it with '_'."""
        return self.value.replace("-", "_")


class InternalTrigger(StrEnum):
    """What the reconciler fires after observing the fleet, the actuator or the clock."""

    BASELINE_READY = "baseline_ready"
    BASELINE_FAILED = "baseline_failed"
    BASELINE_SUSPECT = "baseline_suspect"
    STAGE_APPLIED = "stage_applied"
    APPLY_FAILED = "apply_failed"
    ANALYSIS_PASSED = "analysis_passed"
    ANALYSIS_FAILED = "analysis_failed"
    INCONCLUSIVE_TOO_LONG = "inconclusive_too_long"
    APPROVAL_TIMEOUT = "approval_timeout"
    ROLLBACK_STEP_DONE = "rollback_step_done"
    ROLLBACK_COMPLETE = "rollback_complete"
    ROLLBACK_FAILED = "rollback_failed"


_NOTHING_CHANGED = frozenset(
    {
        WorkflowStatus.PENDING_APPROVAL,
        WorkflowStatus.CAPTURING_BASELINE,
        WorkflowStatus.REJECTED,
        WorkflowStatus.CANCELLED,
        WorkflowStatus.ROLLED_BACK,
    }
)
_STAGE_FULLY_SENT = frozenset(
    {
        WorkflowStatus.APPLYING,
        WorkflowStatus.MONITORING,
        WorkflowStatus.AWAITING_APPROVAL,
        WorkflowStatus.PAUSED,
        WorkflowStatus.COMPLETED,
    }
)


@dataclass(eq=False)
class WorkflowRecord:
    """The in-memory model the machine drives; the persistence layer maps it to and from a row.

    Identity equality (`eq=False`) on purpose: `Machine.add_model` skips a model `==` to one already
    registered, so value equality would leave a second, identical workflow undecorated.
    """

    status: WorkflowStatus
    stages: list[int]
    instance_count: int
    stage_index: int = 0
    changed_count: int = 0
    stage_gates: frozenset[int] = field(default_factory=frozenset)
    status_reason: str | None = None

    def __post_init__(self) -> None:
        self.status = WorkflowStatus(self.status)
        self.stage_gates = frozenset(self.stage_gates)
        problems = record_problems(self)
        if problems:
            raise ValueError("inconsistent workflow record: " + "; ".join(problems))


def _paused_before_any_change(record: WorkflowRecord) -> bool:
    return record.status is WorkflowStatus.PAUSED and record.stage_index == 0 and record.changed_count == 0


def record_problems(record: WorkflowRecord) -> list[str]:
    """Reasons a record could not have been produced by the machine (empty list = consistent)."""
    problems = stage_problems(record.stages) + stage_gate_problems(record.stage_gates, record.stages)
    if record.instance_count < 1:
        problems.append(f"instance_count must be at least 1, got {record.instance_count}")
    if not 0 <= record.stage_index < len(record.stages):
        problems.append(f"stage_index {record.stage_index} is outside the {len(record.stages)} stages")
    if problems:
        return problems
    stage_total = stage_target_count(record.stages[record.stage_index], record.instance_count)
    if not 0 <= record.changed_count <= stage_total:
        problems.append(f"changed_count {record.changed_count} is outside 0..{stage_total} for this stage")
    elif record.status in _NOTHING_CHANGED and record.changed_count != 0:
        problems.append(f"a {record.status} workflow has changed no instance, got {record.changed_count}")
    elif _paused_before_any_change(record):
        pass  # the A/A check paused it during the baseline: nothing was sent
    elif record.status in _STAGE_FULLY_SENT and record.changed_count != stage_total:
        problems.append(
            f"a {record.status} workflow has sent its whole stage ({stage_total}), got {record.changed_count}"
        )
    if record.status is WorkflowStatus.COMPLETED and record.stage_index != len(record.stages) - 1:
        problems.append("a completed workflow must be at its last stage")
    if record.status is WorkflowStatus.AWAITING_APPROVAL and record.stage_index + 1 not in record.stage_gates:
        problems.append(f"awaiting_approval needs a gate before stage {record.stage_index + 1}")
    return problems


class InvalidTransition(Exception):
    """An action or trigger the workflow's current status does not accept (the API's 409 `invalid_transition`)."""

    def __init__(self, action: str, status: WorkflowStatus, allowed_actions: list[str], detail: str = "") -> None:
        self.action = action
        self.status = status
        self.allowed_actions = allowed_actions
        self.detail = detail
        allowed = ", ".join(allowed_actions) or "none"
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"cannot {action} a workflow that is {status}{suffix}; allowed actions: {allowed}")
