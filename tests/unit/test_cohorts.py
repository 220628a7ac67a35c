"""Cohort arithmetic: stage totals, the canary/control split, stage validation and the rollback plan."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from performance_agent.workflows.cohorts import (
    DEFAULT_STAGES,
    Cohorts,
    RollbackStep,
    changed_count_after_rollback_step,
    cohorts_for_count,
    cohorts_for_stage,
    rollback_plan,
    stage_gate_problems,
    stage_instance_ids,
    stage_problems,
    stage_target_count,
    stage_target_counts,
    validate_stages,
)

IDS_10 = tuple(f"i{n}" for n in range(10))


@st.composite
def stage_lists(draw: st.DrawFn) -> list[int]:
    below_100 = draw(st.lists(st.integers(1, 99), unique=True, max_size=6))
    return [*sorted(below_100), 100]


@pytest.mark.parametrize(
    ("instance_count", "stages", "expected"),
    [
        (1, [10, 50, 100], [1, 1, 1]),
        (3, [10, 50, 100], [1, 2, 3]),
        (10, [10, 50, 100], [1, 5, 10]),
        (7, [10, 50, 100], [1, 4, 7]),
        (30, [10, 50, 100], [3, 15, 30]),
        (100, [7, 55, 100], [7, 55, 100]),  # 7 / 100 * 100 == 7.000000000000001 in floats; must stay 7
        (25, [28, 100], [7, 25]),  # 28 / 100 * 25 == 7.000000000000001 in floats
        (101, [1, 100], [2, 101]),
        (1000, [1, 25, 100], [10, 250, 1000]),
    ],
)
def test_stage_totals(instance_count: int, stages: list[int], expected: list[int]) -> None:
    assert stage_target_counts(stages, instance_count) == expected


@pytest.mark.parametrize(("percent", "instance_count"), [(0, 10), (101, 10), (-5, 10), (10, 0), (10, -1)])
def test_stage_target_count_refuses_impossible_inputs(percent: int, instance_count: int) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        stage_target_count(percent, instance_count)


@given(percent=st.integers(1, 100), instance_count=st.integers(1, 5000))
def test_stage_target_count_is_exact_ceiling(percent: int, instance_count: int) -> None:
    total = stage_target_count(percent, instance_count)
    assert total == max(1, math.ceil(Fraction(percent, 100) * instance_count))
    assert 1 <= total <= instance_count
    assert stage_target_count(100, instance_count) == instance_count


@given(stages=stage_lists(), instance_count=st.integers(1, 500))
def test_stage_totals_never_decrease_and_end_with_everyone(stages: list[int], instance_count: int) -> None:
    totals = stage_target_counts(stages, instance_count)
    assert totals == sorted(totals)
    assert totals[-1] == instance_count


def test_default_stages_are_valid() -> None:
    assert DEFAULT_STAGES == (10, 50, 100)
    assert stage_problems(DEFAULT_STAGES) == []
    validate_stages(list(DEFAULT_STAGES))


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ([], ["stages must not be empty"]),
        ([100], []),
        ([1, 100], []),
        ([10, 50], ["the last stage must be 100, got 50"]),
        ([50, 10, 100], ["stages[1] = 10 must be greater than stages[0] = 50"]),
        ([10, 10, 100], ["stages[1] = 10 must be greater than stages[0] = 10"]),
        ([0, 100], ["stages[0] = 0 is outside 1..100"]),
        ([10, 150], ["stages[1] = 150 is outside 1..100", "the last stage must be 100, got 150"]),
        ([True, 100], ["stages[0] must be a whole percentage, got True"]),
        ([12.5, 100], ["stages[0] must be a whole percentage, got 12.5"]),
    ],
)
def test_stage_problems(stages: list[int], expected: list[str]) -> None:
    assert stage_problems(stages) == expected


def test_validate_stages_names_every_problem() -> None:
    with pytest.raises(ValueError, match=r"^stages\[1\] = 150 is outside 1..100; the last stage must be 100, got 150$"):
        validate_stages([10, 150])


@pytest.mark.parametrize(
    ("gates", "expected"),
    [
        (set(), []),
        ({1, 2}, []),
        ({0}, ["stage gate 0 is the start approval; use approval.required instead"]),
        ({3}, ["stage gate 3 does not name a later stage (valid: 1..2)"]),
        ({-1, 2}, ["stage gate -1 does not name a later stage (valid: 1..2)"]),
    ],
)
def test_stage_gate_problems(gates: set[int], expected: list[str]) -> None:
    assert stage_gate_problems(gates, [10, 50, 100]) == expected


def test_single_stage_plan_accepts_no_gate() -> None:
    assert stage_gate_problems({1}, [100]) == ["stage gate 1 does not name a later stage (valid: 1..0)"]


def test_cohorts_follow_the_given_order() -> None:
    ids = ["zeta", "alpha", "mid"]
    assert cohorts_for_count(ids, 2) == Cohorts(canary=("zeta", "alpha"), control=("mid",))
    assert cohorts_for_count(ids, 0) == Cohorts(canary=(), control=("zeta", "alpha", "mid"))
    assert cohorts_for_count(ids, 3) == Cohorts(canary=("zeta", "alpha", "mid"), control=())


def test_cohorts_for_each_stage_of_three_instances() -> None:
    ids = ["a", "b", "c"]
    assert [cohorts_for_stage(ids, [10, 50, 100], index) for index in range(3)] == [
        Cohorts(canary=("a",), control=("b", "c")),
        Cohorts(canary=("a", "b"), control=("c",)),
        Cohorts(canary=("a", "b", "c"), control=()),
    ]


def test_single_instance_is_changed_by_the_first_stage() -> None:
    assert cohorts_for_stage(["only"], [10, 50, 100], 0) == Cohorts(canary=("only",), control=())
    assert [stage_instance_ids(["only"], [10, 50, 100], index) for index in range(3)] == [("only",), (), ()]


def test_cohorts_refuse_repeated_instances_and_impossible_counts() -> None:
    with pytest.raises(ValueError, match="must not repeat"):
        cohorts_for_count(["a", "b", "a"], 1)
    with pytest.raises(ValueError, match="must not repeat"):
        stage_instance_ids(["a", "a"], [100], 0)
    with pytest.raises(ValueError, match=r"within 0..2, got 3"):
        cohorts_for_count(["a", "b"], 3)
    with pytest.raises(ValueError, match=r"within 0..2, got -1"):
        cohorts_for_count(["a", "b"], -1)


def test_stage_instance_ids_partition_the_fleet() -> None:
    assert [stage_instance_ids(IDS_10, [10, 50, 100], index) for index in range(3)] == [
        ("i0",),
        ("i1", "i2", "i3", "i4"),
        ("i5", "i6", "i7", "i8", "i9"),
    ]


def test_rollback_plan_reverts_latest_stage_first() -> None:
    assert rollback_plan(IDS_10, [10, 50, 100], 10) == [
        RollbackStep(2, 100, ("i5", "i6", "i7", "i8", "i9")),
        RollbackStep(1, 50, ("i1", "i2", "i3", "i4")),
        RollbackStep(0, 10, ("i0",)),
    ]
    assert rollback_plan(IDS_10, [10, 50, 100], 5) == [
        RollbackStep(1, 50, ("i1", "i2", "i3", "i4")),
        RollbackStep(0, 10, ("i0",)),
    ]
    assert rollback_plan(IDS_10, [10, 50, 100], 0) == []


def test_rollback_plan_skips_stages_that_changed_nothing() -> None:
    assert rollback_plan(["a", "b", "c"], [10, 20, 100], 3) == [
        RollbackStep(2, 100, ("b", "c")),
        RollbackStep(0, 10, ("a",)),
    ]
    assert rollback_plan(["only"], [10, 50, 100], 1) == [RollbackStep(0, 10, ("only",))]


def test_rollback_plan_reverts_a_partially_sent_stage() -> None:
    assert rollback_plan(IDS_10, [10, 50, 100], 3) == [
        RollbackStep(1, 50, ("i1", "i2")),
        RollbackStep(0, 10, ("i0",)),
    ]


@given(stages=stage_lists(), instance_count=st.integers(1, 60), data=st.data())
def test_count_after_rollback_step_walks_the_plan(stages: list[int], instance_count: int, data: st.DataObject) -> None:
    ids = [f"i{n}" for n in range(instance_count)]
    stage_index = data.draw(st.integers(0, len(stages) - 1))
    changed = stage_target_count(stages[stage_index], instance_count)
    plan = rollback_plan(ids, stages, changed)
    assert sorted(instance for step in plan for instance in step.instance_ids) == sorted(ids[:changed])
    assert [step.stage_index for step in plan] == sorted({step.stage_index for step in plan}, reverse=True)
    for step in plan:
        remaining = changed_count_after_rollback_step(stages, instance_count, changed)
        assert tuple(ids[remaining:changed]) == step.instance_ids
        changed = remaining
    assert changed == 0


@pytest.mark.parametrize("changed_count", [0, 11, -1])
def test_count_after_rollback_step_needs_something_to_revert(changed_count: int) -> None:
    with pytest.raises(ValueError, match=r"within 1..10"):
        changed_count_after_rollback_step([10, 50, 100], 10, changed_count)
