"""The workflow state machine: the full status x action matrix, reconciler triggers and the pure API around them.

Expectations are written out by hand from issue 5 and docs/rollout.md ("User actions"), not read back from
the machine, so a wrong edge in the machine fails here.
"""

from __future__ import annotations

import dataclasses

import pytest
from transitions import MachineError

from performance_agent.workflows.machine import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    WORKFLOW_MACHINE,
    InternalTrigger,
    InvalidTransition,
    UserAction,
    WorkflowRecord,
    WorkflowStatus,
    allowed_actions,
    apply_trigger,
    initial_status,
    is_active,
    is_terminal,
    new_workflow_record,
)

S = WorkflowStatus
STAGES = [10, 50, 100]
INSTANCES = 10  # stage totals 1, 5, 10

# One consistent record per status: ten instances, gate before stage 2, sitting at stage 1 (5 changed).
RECORD_SHAPES: dict[WorkflowStatus, tuple[int, int]] = {
    S.PENDING_APPROVAL: (0, 0),
    S.REJECTED: (0, 0),
    S.CANCELLED: (0, 0),
    S.CAPTURING_BASELINE: (0, 0),
    S.APPLYING: (1, 5),
    S.MONITORING: (1, 5),
    S.AWAITING_APPROVAL: (1, 5),
    S.PAUSED: (1, 5),
    S.ROLLING_BACK: (1, 5),
    S.ROLLED_BACK: (1, 0),
    S.COMPLETED: (2, 10),
    S.FAILED: (1, 5),
}


def record_in(status: WorkflowStatus) -> WorkflowRecord:
    stage_index, changed_count = RECORD_SHAPES[status]
    return WorkflowRecord(
        status=status,
        stages=list(STAGES),
        instance_count=INSTANCES,
        stage_index=stage_index,
        changed_count=changed_count,
        stage_gates=frozenset({2}),
    )


def fields_of(record: WorkflowRecord) -> dict[str, object]:
    return dataclasses.asdict(record)


USER_EXPECTED: dict[tuple[WorkflowStatus, str], tuple[WorkflowStatus, int, int]] = {
    # (status, action) -> (new status, stage_index, changed_count)
    (S.PENDING_APPROVAL, "approve"): (S.CAPTURING_BASELINE, 0, 0),
    (S.PENDING_APPROVAL, "reject"): (S.REJECTED, 0, 0),
    (S.PENDING_APPROVAL, "abort"): (S.CANCELLED, 0, 0),
    (S.PENDING_APPROVAL, "cancel"): (S.CANCELLED, 0, 0),
    (S.CAPTURING_BASELINE, "abort"): (S.CANCELLED, 0, 0),
    (S.CAPTURING_BASELINE, "cancel"): (S.CANCELLED, 0, 0),
    (S.APPLYING, "abort"): (S.ROLLING_BACK, 1, 5),
    (S.MONITORING, "abort"): (S.ROLLING_BACK, 1, 5),
    (S.MONITORING, "pause"): (S.PAUSED, 1, 5),
    (S.AWAITING_APPROVAL, "approve"): (S.APPLYING, 2, 10),
    (S.AWAITING_APPROVAL, "reject"): (S.ROLLING_BACK, 1, 5),
    (S.AWAITING_APPROVAL, "abort"): (S.ROLLING_BACK, 1, 5),
    (S.AWAITING_APPROVAL, "pause"): (S.PAUSED, 1, 5),
    (S.PAUSED, "abort"): (S.ROLLING_BACK, 1, 5),
    (S.PAUSED, "resume"): (S.MONITORING, 1, 5),
    (S.FAILED, "retry-rollback"): (S.ROLLING_BACK, 1, 5),
    (S.FAILED, "abort"): (S.ROLLED_BACK, 1, 0),
}
ACTIONS = ["approve", "reject", "abort", "cancel", "pause", "resume", "retry-rollback"]


def expected_allowed(status: WorkflowStatus) -> list[str]:
    return sorted(action for action in ACTIONS if (status, action) in USER_EXPECTED)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("status", list(WorkflowStatus))
def test_user_action_matrix(status: WorkflowStatus, action: str) -> None:
    record = record_in(status)
    before = fields_of(record)
    expected = USER_EXPECTED.get((status, action))
    if expected is None:
        with pytest.raises(InvalidTransition) as caught:
            apply_trigger(record, action)
        assert caught.value.action == action
        assert caught.value.status is status
        assert caught.value.allowed_actions == expected_allowed(status)
        assert fields_of(record) == before
        return
    new_status, stage_index, changed_count = expected
    assert apply_trigger(record, action) is new_status
    assert (record.status, record.stage_index, record.changed_count) == (new_status, stage_index, changed_count)
    assert type(record.status) is WorkflowStatus


@pytest.mark.parametrize("status", list(WorkflowStatus))
def test_allowed_actions_match_the_matrix(status: WorkflowStatus) -> None:
    assert allowed_actions(status) == expected_allowed(status)
    assert allowed_actions(status.value) == expected_allowed(status)


def test_allowed_actions_per_status_spelled_out() -> None:
    assert allowed_actions(S.PENDING_APPROVAL) == ["abort", "approve", "cancel", "reject"]
    assert allowed_actions(S.AWAITING_APPROVAL) == ["abort", "approve", "pause", "reject"]
    assert allowed_actions(S.FAILED) == ["abort", "retry-rollback"]
    assert allowed_actions(S.ROLLING_BACK) == []
    assert allowed_actions(S.COMPLETED) == []


def test_allowed_actions_returns_a_fresh_list() -> None:
    allowed_actions(S.MONITORING).append("approve")
    assert allowed_actions(S.MONITORING) == ["abort", "pause"]


INTERNAL_EXPECTED: dict[tuple[WorkflowStatus, str], tuple[WorkflowStatus, int, int]] = {
    (S.PENDING_APPROVAL, "approval_timeout"): (S.CANCELLED, 0, 0),
    (S.CAPTURING_BASELINE, "baseline_ready"): (S.APPLYING, 0, 1),
    (S.CAPTURING_BASELINE, "baseline_failed"): (S.FAILED, 0, 0),
    (S.CAPTURING_BASELINE, "baseline_suspect"): (S.PAUSED, 0, 0),
    (S.APPLYING, "stage_applied"): (S.MONITORING, 1, 5),
    (S.APPLYING, "apply_failed"): (S.ROLLING_BACK, 1, 5),
    (S.MONITORING, "analysis_passed"): (S.AWAITING_APPROVAL, 1, 5),  # stage 2 is gated
    (S.MONITORING, "analysis_failed"): (S.ROLLING_BACK, 1, 5),
    (S.MONITORING, "inconclusive_too_long"): (S.PAUSED, 1, 5),
    (S.AWAITING_APPROVAL, "analysis_failed"): (S.ROLLING_BACK, 1, 5),
    (S.AWAITING_APPROVAL, "approval_timeout"): (S.ROLLING_BACK, 1, 5),
    (S.PAUSED, "analysis_failed"): (S.ROLLING_BACK, 1, 5),
    (S.ROLLING_BACK, "rollback_step_done"): (S.ROLLING_BACK, 1, 1),
    (S.ROLLING_BACK, "rollback_failed"): (S.FAILED, 1, 5),
}
# Triggers whose status is right but whose condition fails for the record above.
INTERNAL_GUARDED = {(S.ROLLING_BACK, "rollback_complete")}


@pytest.mark.parametrize("trigger", [trigger.value for trigger in InternalTrigger])
@pytest.mark.parametrize("status", list(WorkflowStatus))
def test_internal_trigger_matrix(status: WorkflowStatus, trigger: str) -> None:
    record = record_in(status)
    before = fields_of(record)
    expected = INTERNAL_EXPECTED.get((status, trigger))
    if expected is None:
        with pytest.raises(InvalidTransition) as caught:
            apply_trigger(record, trigger)
        assert caught.value.action == trigger
        assert caught.value.allowed_actions == expected_allowed(status)
        assert (caught.value.detail != "") == ((status, trigger) in INTERNAL_GUARDED)
        assert fields_of(record) == before
        return
    new_status, stage_index, changed_count = expected
    assert apply_trigger(record, trigger) is new_status
    assert (record.status, record.stage_index, record.changed_count) == (new_status, stage_index, changed_count)


def monitoring(stage_index: int, gates: frozenset[int] = frozenset()) -> WorkflowRecord:
    changed = [1, 5, 10][stage_index]
    return WorkflowRecord(S.MONITORING, list(STAGES), INSTANCES, stage_index, changed, gates)


def test_analysis_passed_without_gate_applies_next_stage() -> None:
    record = monitoring(0)
    assert apply_trigger(record, "analysis_passed") is S.APPLYING
    assert (record.stage_index, record.changed_count) == (1, 5)


def test_analysis_passed_at_last_stage_completes_even_when_gated_earlier() -> None:
    record = monitoring(2, frozenset({1, 2}))
    assert apply_trigger(record, "analysis_passed") is S.COMPLETED
    assert (record.stage_index, record.changed_count) == (2, 10)


def test_analysis_passed_before_a_gate_waits_for_approval() -> None:
    record = monitoring(0, frozenset({1}))
    assert apply_trigger(record, "analysis_passed") is S.AWAITING_APPROVAL
    assert (record.stage_index, record.changed_count) == (0, 1)


def test_rollback_complete_once_nothing_is_left_changed() -> None:
    record = WorkflowRecord(S.ROLLING_BACK, list(STAGES), INSTANCES, 2, 0)
    assert apply_trigger(record, "rollback_complete") is S.ROLLED_BACK
    with pytest.raises(InvalidTransition, match="cannot rollback_step_done a workflow that is rolled_back"):
        apply_trigger(record, "rollback_step_done")


def test_rollback_step_done_with_nothing_changed_is_refused() -> None:
    record = WorkflowRecord(S.ROLLING_BACK, list(STAGES), INSTANCES, 1, 0)
    with pytest.raises(InvalidTransition, match=r"its condition does not hold") as caught:
        apply_trigger(record, "rollback_step_done")
    assert caught.value.detail == "its condition does not hold"
    assert record.status is S.ROLLING_BACK


def test_good_change_walks_every_stage_with_approvals() -> None:
    record = new_workflow_record(3, [10, 50, 100], stage_gates={2}, approval_required=True)
    seen = []
    for trigger in [
        "approve",
        "baseline_ready",
        "stage_applied",
        "analysis_passed",
        "stage_applied",
        "analysis_passed",
        "approve",
        "stage_applied",
        "analysis_passed",
    ]:
        seen.append((apply_trigger(record, trigger).value, record.stage_index, record.changed_count))
    assert seen == [
        ("capturing_baseline", 0, 0),
        ("applying", 0, 1),
        ("monitoring", 0, 1),
        ("applying", 1, 2),
        ("monitoring", 1, 2),
        ("awaiting_approval", 1, 2),
        ("applying", 2, 3),
        ("monitoring", 2, 3),
        ("completed", 2, 3),
    ]


def test_regression_at_second_stage_reverts_stage_by_stage() -> None:
    record = new_workflow_record(10)
    for trigger in ["baseline_ready", "stage_applied", "analysis_passed", "stage_applied"]:
        apply_trigger(record, trigger)
    apply_trigger(record, "analysis_failed", reason="ttft_p99 +35% vs control")
    assert (record.status, record.changed_count, record.status_reason) == (
        S.ROLLING_BACK,
        5,
        "ttft_p99 +35% vs control",
    )
    apply_trigger(record, "rollback_step_done")
    assert (record.status, record.changed_count) == (S.ROLLING_BACK, 1)
    apply_trigger(record, "rollback_failed", reason="actuator kept failing for i0")
    assert (record.status, record.changed_count, record.status_reason) == (S.FAILED, 1, "actuator kept failing for i0")
    apply_trigger(record, "retry-rollback")
    apply_trigger(record, "rollback_step_done")
    assert apply_trigger(record, "rollback_complete") is S.ROLLED_BACK
    assert (record.changed_count, record.stage_index) == (0, 1)


def test_failed_baseline_is_released_by_retry_rollback() -> None:
    record = new_workflow_record(4)
    apply_trigger(record, "baseline_failed", reason="no samples from i2")
    assert is_active(record.status)
    apply_trigger(record, "retry-rollback")
    assert apply_trigger(record, "rollback_complete") is S.ROLLED_BACK


def test_a_failed_rollout_fixed_by_hand_is_released_by_abort() -> None:
    record = record_in(S.FAILED)
    assert apply_trigger(record, "abort", reason="abort by lead: reverted vllm-0 by hand") is S.ROLLED_BACK
    assert (record.changed_count, record.status_reason) == (0, "abort by lead: reverted vllm-0 by hand")
    assert not is_active(record.status)


def test_status_reason_follows_status_changes_only() -> None:
    record = WorkflowRecord(S.ROLLING_BACK, list(STAGES), INSTANCES, 2, 10, status_reason="guardrail")
    apply_trigger(record, "rollback_step_done")
    assert record.status_reason == "guardrail"
    apply_trigger(record, "rollback_step_done", reason="slow revert")
    assert record.status_reason == "slow revert"
    apply_trigger(record, "rollback_step_done")
    apply_trigger(record, "rollback_complete")
    assert record.status_reason is None


def test_both_spellings_of_retry_rollback_and_enum_members_are_accepted() -> None:
    for spelling in ["retry_rollback", "retry-rollback", UserAction.RETRY_ROLLBACK]:
        record = record_in(S.FAILED)
        assert apply_trigger(record, spelling) is S.ROLLING_BACK
    record = record_in(S.CAPTURING_BASELINE)
    assert apply_trigger(record, InternalTrigger.BASELINE_READY) is S.APPLYING


def test_invalid_transition_is_the_only_exception_and_reads_well() -> None:
    record = record_in(S.COMPLETED)
    with pytest.raises(InvalidTransition) as caught:
        apply_trigger(record, "retry_rollback")
    assert not isinstance(caught.value, MachineError)
    assert caught.value.action == "retry-rollback"
    assert str(caught.value) == "cannot retry-rollback a workflow that is completed; allowed actions: none"
    with pytest.raises(InvalidTransition) as caught:
        apply_trigger(record_in(S.MONITORING), "approve")
    assert str(caught.value) == "cannot approve a workflow that is monitoring; allowed actions: abort, pause"


@pytest.mark.parametrize("name", ["promote", "promote_full", "retry", "to_completed", "status", ""])
def test_unknown_trigger_is_a_programming_error(name: str) -> None:
    record = record_in(S.MONITORING)
    with pytest.raises(ValueError, match="unknown workflow trigger"):
        apply_trigger(record, name)
    assert record.status is S.MONITORING


def test_terminal_and_active_statuses() -> None:
    terminal = {S.REJECTED, S.CANCELLED, S.ROLLED_BACK, S.COMPLETED}
    active = {
        S.PENDING_APPROVAL,
        S.CAPTURING_BASELINE,
        S.APPLYING,
        S.MONITORING,
        S.AWAITING_APPROVAL,
        S.PAUSED,
        S.ROLLING_BACK,
        S.FAILED,
    }
    assert terminal == TERMINAL_STATUSES
    assert active == ACTIVE_STATUSES
    assert is_terminal("completed")
    assert not is_terminal(S.FAILED)
    assert is_active("failed")
    assert not is_active(S.CANCELLED)
    with pytest.raises(ValueError, match="'done' is not a valid WorkflowStatus"):
        is_terminal("done")


def test_initial_status_depends_on_approval() -> None:
    assert initial_status(approval_required=True) is S.PENDING_APPROVAL
    assert initial_status(approval_required=False) is S.CAPTURING_BASELINE
    record = new_workflow_record(5)
    assert (record.status, record.stages, record.stage_index, record.changed_count) == (
        S.CAPTURING_BASELINE,
        [10, 50, 100],
        0,
        0,
    )
    assert record.stage_gates == frozenset()


def test_machine_has_no_shortcuts_and_terminal_statuses_have_no_exits() -> None:
    assert not WORKFLOW_MACHINE.auto_transitions
    assert not any(name.startswith("to_") for name in WORKFLOW_MACHINE.events)
    for status in TERMINAL_STATUSES:
        assert WORKFLOW_MACHINE.get_triggers(status) == []
        assert WORKFLOW_MACHINE.get_state(status).final
    assert not WORKFLOW_MACHINE.get_state(S.FAILED).final


def test_an_a_a_pause_changes_nothing_and_resume_captures_the_baseline_again() -> None:
    record = new_workflow_record(4)
    apply_trigger(record, "baseline_suspect", reason="the first canary cohort is already slower")
    assert (record.status, record.changed_count, record.status_reason) == (
        S.PAUSED,
        0,
        "the first canary cohort is already slower",
    )
    assert apply_trigger(record, "resume") is S.CAPTURING_BASELINE
    assert record.changed_count == 0
    apply_trigger(record, "baseline_suspect")
    assert apply_trigger(record, "abort") is S.ROLLING_BACK
    assert apply_trigger(record, "rollback_complete") is S.ROLLED_BACK
