"""Cohort arithmetic of a staged rollout: which instances each stage changes and how they are reverted.

The state machine, the reconciler, the actuator payloads and the API validator must agree on the
same numbers, so the arithmetic lives here once, free of I/O. Percentages are whole numbers and the
counts use integer arithmetic: `7 / 100 * 100` is `7.000000000000001` in floating point, which
`ceil` would turn into 8 instances instead of 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

__all__ = (
    "DEFAULT_STAGES",
    "Cohorts",
    "RollbackStep",
    "changed_count_after_rollback_step",
    "cohorts_for_count",
    "cohorts_for_stage",
    "rollback_plan",
    "stage_gate_problems",
    "stage_instance_ids",
    "stage_problems",
    "stage_target_count",
    "stage_target_counts",
    "validate_stages",
)

DEFAULT_STAGES: tuple[int, ...] = (10, 50, 100)


@dataclass(frozen=True, slots=True)
class Cohorts:
    """Canary = instances already changed; control = the rest, compared against the canary under the same traffic."""

    canary: tuple[str, ...]
    control: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RollbackStep:
    """One actuator call of a rollback: the instances a stage changed, reverted together."""

    stage_index: int
    percent: int
    instance_ids: tuple[str, ...]


def stage_target_count(percent: int, instance_count: int) -> int:
    """Total instances changed once a stage of `percent` is applied: ceil(percent% of N), at least one."""
    if instance_count < 1:
        raise ValueError(f"instance_count must be at least 1, got {instance_count}")
    if not 1 <= percent <= 100:
        raise ValueError(f"percent must be within 1..100, got {percent}")
    return max(1, -(-percent * instance_count // 100))


def stage_target_counts(stages: Sequence[int], instance_count: int) -> list[int]:
    """Cumulative changed-instance totals, one per stage."""
    return [stage_target_count(percent, instance_count) for percent in stages]


def stage_problems(stages: Sequence[int]) -> list[str]:
    """Every reason `stages` is not a usable plan (empty list = valid), worded for an API 422 response."""
    if len(stages) == 0:
        return ["stages must not be empty"]
    problems: list[str] = []
    for index, percent in enumerate(stages):
        if isinstance(percent, bool) or not isinstance(percent, int):
            problems.append(f"stages[{index}] must be a whole percentage, got {percent!r}")
            continue
        if not 1 <= percent <= 100:
            problems.append(f"stages[{index}] = {percent} is outside 1..100")
        if index > 0:
            previous = stages[index - 1]
            if isinstance(previous, int) and not isinstance(previous, bool) and percent <= previous:
                problems.append(f"stages[{index}] = {percent} must be greater than stages[{index - 1}] = {previous}")
    if stages[-1] != 100:
        problems.append(f"the last stage must be 100, got {stages[-1]!r}")
    return problems


def validate_stages(stages: Sequence[int]) -> None:
    """Raise ValueError naming every problem, for callers that have no error list to fill."""
    problems = stage_problems(stages)
    if problems:
        raise ValueError("; ".join(problems))


def stage_gate_problems(stage_gates: Collection[int], stages: Sequence[int]) -> list[str]:
    """Reasons a set of approval gates does not fit `stages` (empty list = valid).

    A gate names the stage index a human must approve before it starts. Index 0 is refused: asking
    before the first change is what `approval.required` does, and a gate there would have nothing
    changed to roll back when rejected.
    """
    problems: list[str] = []
    for gate in sorted(stage_gates):
        if gate == 0:
            problems.append("stage gate 0 is the start approval; use approval.required instead")
        elif not 1 <= gate < len(stages):
            problems.append(f"stage gate {gate} does not name a later stage (valid: 1..{len(stages) - 1})")
    return problems


def _require_unique(instance_ids: Sequence[str]) -> None:
    if len(set(instance_ids)) != len(instance_ids):
        raise ValueError("instance_ids must not repeat an instance")


def cohorts_for_count(instance_ids: Sequence[str], changed_count: int) -> Cohorts:
    """Split in the order the instances were given: the first `changed_count` are the canary."""
    _require_unique(instance_ids)
    if not 0 <= changed_count <= len(instance_ids):
        raise ValueError(f"changed_count must be within 0..{len(instance_ids)}, got {changed_count}")
    return Cohorts(canary=tuple(instance_ids[:changed_count]), control=tuple(instance_ids[changed_count:]))


def cohorts_for_stage(instance_ids: Sequence[str], stages: Sequence[int], stage_index: int) -> Cohorts:
    """Canary and control once stage `stage_index` is fully applied."""
    return cohorts_for_count(instance_ids, stage_target_count(stages[stage_index], len(instance_ids)))


def _stage_bounds(stages: Sequence[int], instance_count: int) -> list[tuple[int, int]]:
    """Half-open [start, end) positions in `instance_ids` that each stage adds to the canary."""
    bounds: list[tuple[int, int]] = []
    start = 0
    for end in stage_target_counts(stages, instance_count):
        bounds.append((start, end))
        start = end
    return bounds


def stage_instance_ids(instance_ids: Sequence[str], stages: Sequence[int], stage_index: int) -> tuple[str, ...]:
    """The instances stage `stage_index` changes (its apply call's `instance_ids`).

    Empty when rounding already covered them in an earlier stage, e.g. one instance with [10, 50, 100]:
    stage 0 changes it and stages 1 and 2 change nothing.
    """
    _require_unique(instance_ids)
    start, end = _stage_bounds(stages, len(instance_ids))[stage_index]
    return tuple(instance_ids[start:end])


def rollback_plan(instance_ids: Sequence[str], stages: Sequence[int], changed_count: int) -> list[RollbackStep]:
    """Changed instances grouped by the stage that changed them, latest stage first; empty groups are skipped."""
    cohorts = cohorts_for_count(instance_ids, changed_count)
    steps: list[RollbackStep] = []
    bounds = _stage_bounds(stages, len(instance_ids))
    for stage_index in range(len(bounds) - 1, -1, -1):
        start, end = bounds[stage_index]
        end = min(end, len(cohorts.canary))
        if end > start:
            steps.append(RollbackStep(stage_index, stages[stage_index], tuple(instance_ids[start:end])))
    return steps


def changed_count_after_rollback_step(stages: Sequence[int], instance_count: int, changed_count: int) -> int:
    """How many instances stay changed once the first step of `rollback_plan` is reverted.

    The machine tracks only counts, so this mirrors `rollback_plan` without the instance ids.
    """
    if not 1 <= changed_count <= instance_count:
        raise ValueError(f"changed_count must be within 1..{instance_count} to revert a step, got {changed_count}")
    return max((start for start, _ in _stage_bounds(stages, instance_count) if start < changed_count), default=0)
