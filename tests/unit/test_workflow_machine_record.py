"""The workflow record the machine drives: loading it from stored fields, refusing inconsistent rows,
and how it behaves as a `transitions` model (unregistered on the hot path, registered when asked).
"""

from __future__ import annotations

import pytest
from transitions import MachineError

from performance_agent.workflows.machine import (
    WORKFLOW_MACHINE,
    WorkflowRecord,
    WorkflowStatus,
    apply_trigger,
    new_workflow_record,
)

S = WorkflowStatus
STAGES = [10, 50, 100]
INSTANCES = 10


def record_in(status: WorkflowStatus, stage_index: int = 1, changed_count: int = 5) -> WorkflowRecord:
    return WorkflowRecord(status, list(STAGES), INSTANCES, stage_index, changed_count, frozenset({2}))


def test_record_from_stored_strings() -> None:
    stored = {"status": "paused", "stages": [20, 100], "instance_count": 5, "stage_index": 0, "changed_count": 1}
    record = WorkflowRecord(**stored)  # type: ignore[arg-type]  # rows hold plain strings
    assert record.status is S.PAUSED
    assert apply_trigger(record, "resume") is S.MONITORING


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stages": [50, 10]}, "must be greater than"),
        ({"stage_gates": frozenset({0})}, "stage gate 0"),
        ({"stage_gates": frozenset({3})}, "stage gate 3"),
        ({"instance_count": 0}, "instance_count must be at least 1"),
        ({"stage_index": 3}, "stage_index 3 is outside the 3 stages"),
        ({"changed_count": 6}, "changed_count 6 is outside 0..5"),
        ({"status": S.PENDING_APPROVAL}, "a pending_approval workflow has changed no instance, got 5"),
        ({"status": S.ROLLED_BACK}, "a rolled_back workflow has changed no instance, got 5"),
        ({"changed_count": 3}, "a monitoring workflow has sent its whole stage (5), got 3"),
        ({"status": S.COMPLETED}, "a completed workflow must be at its last stage"),
        ({"status": S.AWAITING_APPROVAL, "stage_gates": frozenset()}, "awaiting_approval needs a gate before stage 2"),
    ],
)
def test_inconsistent_records_are_refused(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "status": S.MONITORING,
        "stages": list(STAGES),
        "instance_count": INSTANCES,
        "stage_index": 1,
        "changed_count": 5,
        "stage_gates": frozenset({2}),
    } | changes
    with pytest.raises(ValueError, match="inconsistent workflow record") as caught:
        WorkflowRecord(**fields)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_failing_effect_leaves_the_status_unchanged() -> None:
    record = record_in(S.AWAITING_APPROVAL)
    record.stage_index = 2  # corrupted after loading: there is no stage 3 to approve
    with pytest.raises(IndexError):
        apply_trigger(record, "approve")
    assert record.status is S.AWAITING_APPROVAL


def test_unregistered_records_leave_no_trace_on_the_machine() -> None:
    models_before = list(WORKFLOW_MACHINE.models)
    record = record_in(S.MONITORING)
    apply_trigger(record, "pause")
    assert WORKFLOW_MACHINE.models == models_before
    assert not hasattr(record, "resume")


def test_registered_records_transition_independently_even_when_identical() -> None:
    records = [new_workflow_record(10) for _ in range(1000)]
    WORKFLOW_MACHINE.add_model(records, initial=S.CAPTURING_BASELINE)
    try:
        assert all(WORKFLOW_MACHINE.models.count(record) == 1 for record in records[:3])
        records[0].baseline_ready()  # type: ignore[attr-defined]  # bound by transitions
        assert records[1].may_baseline_ready()  # type: ignore[attr-defined]
        assert not records[1].may_stage_applied()  # type: ignore[attr-defined]
        assert (records[0].status, records[0].changed_count) == (S.APPLYING, 1)
        assert {record.status for record in records[1:]} == {S.CAPTURING_BASELINE}
        assert apply_trigger(records[2], "abort") is S.CANCELLED
        with pytest.raises(MachineError):
            records[2].abort()  # type: ignore[attr-defined]  # the bound trigger is raw transitions
    finally:
        WORKFLOW_MACHINE.remove_model(records)
    assert records[0] not in WORKFLOW_MACHINE.models


def test_the_shared_machine_refuses_foreign_models() -> None:
    class Lookalike:
        status = S.CAPTURING_BASELINE

    with pytest.raises(TypeError, match="drives WorkflowRecord models, got Lookalike"):
        WORKFLOW_MACHINE.events["baseline_ready"].trigger(Lookalike())
