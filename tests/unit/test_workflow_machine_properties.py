"""Invariants of the workflow machine under random sequences of user actions and reconciler triggers.

The expected numbers are recomputed here with exact fractions instead of the cohort module, so a
rounding bug there cannot hide behind itself.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from performance_agent.workflows.machine import (
    InternalTrigger,
    InvalidTransition,
    UserAction,
    WorkflowRecord,
    WorkflowStatus,
    apply_trigger,
    new_workflow_record,
    record_problems,
)

S = WorkflowStatus
TERMINAL = {S.REJECTED, S.CANCELLED, S.ROLLED_BACK, S.COMPLETED}
ENDINGS_AFTER_A_CHANGE = {S.COMPLETED, S.ROLLED_BACK, S.FAILED}
ALL_TRIGGERS = [action.value for action in UserAction] + [trigger.value for trigger in InternalTrigger]
PROGRESS = ["approve", "baseline_ready", "stage_applied", "analysis_passed"]
# Half of the draws push forward, so deep stages, gates and `completed` are reached, not only early aborts.
TRIGGERS = st.one_of(st.sampled_from(ALL_TRIGGERS), st.sampled_from(PROGRESS))


def stage_total(percent: int, instance_count: int) -> int:
    return max(1, math.ceil(Fraction(percent, 100) * instance_count))


@st.composite
def workflows(draw: st.DrawFn) -> WorkflowRecord:
    stages = [*sorted(draw(st.lists(st.integers(1, 99), unique=True, max_size=5))), 100]
    gates = draw(st.sets(st.integers(1, len(stages) - 1))) if len(stages) > 1 else set()
    return new_workflow_record(
        instance_count=draw(st.integers(1, 40)),
        stages=stages,
        stage_gates=gates,
        approval_required=draw(st.booleans()),
    )


class Observer:
    """Checks every step of one workflow's life against the invariants of issue 5."""

    def __init__(self, record: WorkflowRecord) -> None:
        self.record = record
        self.ever_changed = False
        self.check_state()

    def fire(self, trigger: str) -> bool:
        record = self.record
        before = dataclasses.asdict(record)
        try:
            apply_trigger(record, trigger)
        except InvalidTransition:
            assert dataclasses.asdict(record) == before, "a refused trigger must leave the record untouched"
            return False
        assert before["status"] not in TERMINAL, f"terminal {before['status']} accepted {trigger}"
        self.check_step(before, trigger)
        self.check_state()
        return True

    def check_step(self, before: dict[str, object], trigger: str) -> None:
        record = self.record
        old_index, old_changed = before["stage_index"], before["changed_count"]
        assert isinstance(old_index, int)
        assert isinstance(old_changed, int)
        assert record.stage_index >= old_index, "stage_index never goes back"
        if record.stage_index > old_index:
            assert record.stage_index == old_index + 1, "stages are entered one at a time"
            assert record.status is S.APPLYING
            assert trigger in {"approve", "analysis_passed"}, "a stage starts only after a pass or an approval"
            if record.stage_index in record.stage_gates:
                assert trigger == "approve", f"gated stage {record.stage_index} entered by {trigger}"
        if record.changed_count < old_changed:
            if before["status"] is S.FAILED:
                # An approver's release after fixing the instances by hand (issue 13): all at once, recorded.
                assert trigger == "abort"
                assert (record.status, record.changed_count) == (S.ROLLED_BACK, 0)
            else:
                assert before["status"] is S.ROLLING_BACK
                assert trigger == "rollback_step_done"
        if record.changed_count > old_changed:
            assert record.status is S.APPLYING, "instances change only when a stage starts applying"

    def check_state(self) -> None:
        record = self.record
        assert record_problems(record) == []
        allowed = stage_total(record.stages[record.stage_index], record.instance_count)
        assert 0 <= record.changed_count <= allowed, "never more instances changed than the current stage allows"
        self.ever_changed = self.ever_changed or record.changed_count > 0
        if self.ever_changed:
            assert record.status not in {S.REJECTED, S.CANCELLED, S.PENDING_APPROVAL, S.CAPTURING_BASELINE}
        if record.status is S.COMPLETED:
            assert record.changed_count == record.instance_count
            assert record.stage_index == len(record.stages) - 1
        if record.status in {S.ROLLED_BACK, S.REJECTED, S.CANCELLED}:
            assert record.changed_count == 0


def wind_down(observer: Observer) -> None:
    """Abort, then revert until the machine stops: every path must end in a terminal status or `failed`."""
    for _ in range(100):
        record = observer.record
        if record.status in TERMINAL:
            break
        if record.status is S.ROLLING_BACK:
            step = "rollback_step_done" if record.changed_count else "rollback_complete"
        elif record.status is S.FAILED:
            step = "retry-rollback"
        else:
            step = "abort"
        assert observer.fire(step), f"{step} refused in {record.status}"
    assert observer.record.status in TERMINAL
    if observer.ever_changed:
        assert observer.record.status in ENDINGS_AFTER_A_CHANGE


FORWARD_STEP = {
    S.PENDING_APPROVAL: "approve",
    S.CAPTURING_BASELINE: "baseline_ready",
    S.APPLYING: "stage_applied",
    S.MONITORING: "analysis_passed",
    S.AWAITING_APPROVAL: "approve",
    S.PAUSED: "resume",
}


def push_forward(observer: Observer) -> None:
    """Say yes to everything: any workflow not yet rolling back can still complete."""
    for _ in range(100):
        step = FORWARD_STEP.get(observer.record.status)
        if step is None:
            break
        assert observer.fire(step)
    assert observer.record.status is S.COMPLETED


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(record=workflows(), triggers=st.lists(TRIGGERS, max_size=60))
def test_random_histories_keep_the_invariants_and_wind_down(record: WorkflowRecord, triggers: list[str]) -> None:
    observer = Observer(record)
    for trigger in triggers:
        observer.fire(trigger)
    wind_down(observer)
    for trigger in ALL_TRIGGERS:
        assert not observer.fire(trigger), "terminal statuses absorb every trigger"


@settings(max_examples=200, deadline=None)
@given(record=workflows(), triggers=st.lists(TRIGGERS, max_size=60))
def test_a_workflow_that_is_not_rolling_back_can_still_complete(record: WorkflowRecord, triggers: list[str]) -> None:
    observer = Observer(record)
    for trigger in triggers:
        observer.fire(trigger)
    if observer.record.status in FORWARD_STEP:
        push_forward(observer)
    if observer.record.status is S.COMPLETED:
        for trigger in ALL_TRIGGERS:
            assert not observer.fire(trigger), "completed absorbs every trigger"


@settings(max_examples=200, deadline=None)
@given(
    record=workflows(),
    prefix=st.lists(TRIGGERS, max_size=40),
    data=st.data(),
)
def test_a_breach_after_a_change_always_rolls_back(
    record: WorkflowRecord, prefix: list[str], data: st.DataObject
) -> None:
    """A guardrail breach is accepted exactly where instances changed and health is watched, and rolls back."""
    observer = Observer(record)
    for trigger in prefix:
        observer.fire(trigger)
    status_before = observer.record.status
    if observer.fire("analysis_failed"):
        assert observer.record.status is S.ROLLING_BACK
        assert status_before in {S.MONITORING, S.AWAITING_APPROVAL, S.PAUSED}
    else:
        assert status_before not in {S.MONITORING, S.AWAITING_APPROVAL, S.PAUSED}
    trailing = data.draw(st.lists(TRIGGERS, max_size=20))
    for trigger in trailing:
        observer.fire(trigger)
    wind_down(observer)
