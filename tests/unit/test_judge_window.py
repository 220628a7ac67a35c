"""One window of the judge with plain numbers: evidence, decisions, references, odd data, storage."""

from __future__ import annotations

import math

import msgspec
import pytest

from performance_agent.judge import (
    BucketCounts,
    CohortCounts,
    JudgeState,
    Tolerances,
    WindowJudgement,
    judge_window,
    plan_margins,
)
from performance_agent.judge.plan import JudgePlan
from tests.unit.judge_support import EDGES, cohort

BASELINE = cohort(10_000, instances=10, errors=10, preemptions=100)
PLAN = plan_margins(BASELINE, Tolerances(slo_targets_s={"ttft_s": 0.4}))


def metric_of(judgement: WindowJudgement, name: str) -> dict[str, object]:
    found = next(item for item in judgement.metrics if item.metric == name)
    return msgspec.structs.asdict(found)


def finite_everywhere(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(item) for item in value.values())
    if isinstance(value, list):
        return all(finite_everywhere(item) for item in value)
    return True


def test_identical_cohorts_continue_and_their_evidence_shrinks() -> None:
    state = JudgeState()
    for _ in range(3):
        state, judgement = judge_window(state, PLAN, cohort(120), cohort(1080, instances=9))
    assert judgement.decision == "continue"
    assert not judgement.critical
    assert judgement.reasons == []
    ttft = next(item for item in judgement.metrics if item.metric == "ttft_s")
    assert ttft.evidence < 1
    assert ttft.judged
    assert not ttft.exceeded
    assert ttft.threshold == pytest.approx(8 / 0.035)  # goodput makes K = 8
    assert state.windows == 3
    assert state.canary_requests == 360
    assert finite_everywhere(msgspec.to_builtins(judgement))


def test_a_slower_canary_is_rolled_back_with_readable_evidence() -> None:
    slower = cohort(240, (0.95, 0.8, 0.4, 0.1))
    _state, judgement = judge_window(JudgeState(), PLAN, slower, cohort(1080, instances=9))
    assert judgement.decision == "rollback"
    assert not judgement.critical
    assert judgement.reasons[0].startswith("ttft_s beyond max_ttft_p99_increase 0.2: evidence ")
    ttft = next(item for item in judgement.metrics if item.metric == "ttft_s")
    assert ttft.exceeded
    assert ttft.evidence >= ttft.threshold
    edge = next(item for item in ttft.edges if item.edge == 0.4)
    assert (edge.canary_above, edge.canary_total, edge.reference_above, edge.reference_total) == (96, 240, 108, 1080)
    assert edge.canary_share == pytest.approx(0.4)
    assert edge.reference_share == pytest.approx(0.1)
    assert edge.margin == pytest.approx(next(e.margin for e in PLAN.metrics[0].edges if e.edge == 0.4))
    assert edge.window_evidence == pytest.approx(edge.evidence)
    assert judgement.metrics[0].log_evidence == pytest.approx(math.log(ttft.evidence))
    assert metric_of(judgement, "goodput")["exceeded"]  # 40% miss the 0.4 s target instead of 10%


def test_evidence_multiplies_across_windows_and_survives_storage() -> None:
    slower = cohort(60, (0.9, 0.6, 0.25, 0.05))
    state, first = judge_window(JudgeState(), PLAN, slower, cohort(540, instances=9))
    stored = msgspec.json.decode(msgspec.json.encode(state), type=JudgeState)
    assert stored == state
    state, second = judge_window(stored, PLAN, slower, cohort(540, instances=9))
    edge_first = next(e for e in first.metrics[0].edges if e.edge == 0.4)
    edge_second = next(e for e in second.metrics[0].edges if e.edge == 0.4)
    # A window's evidence is the factor by which it changed the running e-value.
    assert edge_second.evidence == pytest.approx(edge_first.evidence * edge_second.window_evidence)
    assert edge_second.evidence > edge_first.evidence
    metric_first, metric_second = first.metrics[0], second.metrics[0]
    assert metric_second.evidence == pytest.approx(metric_first.evidence * metric_second.window_evidence)
    sums = state.metrics["ttft_s"].edges["ttft_s:0.4"]
    assert len(sums) == len(PLAN.alternatives)
    assert state.metrics["ttft_s"].windows == 2


def test_old_or_partial_states_decode_with_defaults() -> None:
    assert msgspec.json.decode(b"{}", type=JudgeState) == JudgeState()
    partial = msgspec.json.decode(b'{"metrics": {"ttft_s": {}}}', type=JudgeState)
    assert partial.metrics["ttft_s"].edges == {}
    _, judgement = judge_window(partial, PLAN, cohort(120), cohort(1080, instances=9))
    assert judgement.decision == "continue"


def test_empty_windows_and_resets_add_no_evidence() -> None:
    empty = CohortCounts(instances=1, requests=0, errors=0, preemptions=0, histograms={})
    state, judgement = judge_window(JudgeState(), PLAN, empty, empty)
    assert judgement.decision == "continue"
    assert metric_of(judgement, "ttft_s")["note"] == "no data in this window"
    assert all(item.evidence == pytest.approx(1.0) for item in judgement.metrics)
    reset = BucketCounts(edges=EDGES, counts_le=[50, 60, 70, 200], total=100)
    broken = CohortCounts(instances=1, requests=100, errors=0, preemptions=0, histograms={"ttft_s": reset})
    _, judgement = judge_window(state, PLAN, broken, cohort(900, instances=9))
    assert metric_of(judgement, "ttft_s")["judged"] is False
    zeros = cohort(0, instances=1)
    _, judgement = judge_window(state, PLAN, zeros, cohort(900, instances=9))
    assert finite_everywhere(msgspec.to_builtins(judgement))


def test_without_a_control_the_canary_is_judged_against_the_baseline_shares() -> None:
    _, same = judge_window(JudgeState(), PLAN, cohort(1200, instances=10), None)
    assert same.reference == "baseline"
    assert same.decision == "continue"
    ttft = next(item for item in same.metrics if item.metric == "ttft_s")
    assert all(edge.reference_share is None and edge.tolerated_share is not None for edge in ttft.edges)
    assert (
        metric_of(same, "throughput")["note"] == "needs a concurrent control cohort (load differs from the baseline's)"
    )
    _, slower = judge_window(JudgeState(), PLAN, cohort(1200, (0.95, 0.8, 0.4, 0.1), instances=10), None)
    assert slower.decision == "rollback"


def test_a_failing_canary_is_a_critical_rollback_even_with_zero_errors_in_control() -> None:
    _, judgement = judge_window(JudgeState(), PLAN, cohort(50, errors=20), cohort(450, instances=9, errors=0))
    assert judgement.decision == "rollback"
    assert judgement.critical
    assert any(reason.startswith("critical: error_rate beyond max_error_rate 0.02") for reason in judgement.reasons)
    assert metric_of(judgement, "error_rate_increase")["exceeded"]
    _, quiet = judge_window(JudgeState(), PLAN, cohort(50, errors=0), cohort(450, instances=9, errors=0))
    assert metric_of(quiet, "error_rate_increase")["window_evidence"] == pytest.approx(1.0)


def test_throughput_is_judged_per_instance_second_when_windows_differ_in_length() -> None:
    """A canary window that ended early on a stored reading (0.3 s of 1 s) served as fast as control."""
    short_canary = cohort(60, exposure_s=0.3)
    control = cohort(1800, instances=9, exposure_s=9.0)
    _, timed = judge_window(JudgeState(), PLAN, short_canary, control)
    assert not metric_of(timed, "throughput")["exceeded"]
    assert timed.decision == "continue"
    # Per instance the same counts look like a collapse to 30% of control; only the exposure tells them apart.
    _, untimed = judge_window(JudgeState(), PLAN, cohort(60), cohort(1800, instances=9))
    assert metric_of(untimed, "throughput")["exceeded"]
    # A starved canary is still caught at equal exposure.
    _, starved = judge_window(JudgeState(), PLAN, cohort(20, exposure_s=1.0), cohort(1800, instances=9, exposure_s=9.0))
    assert metric_of(starved, "throughput")["exceeded"]


def test_a_starved_canary_and_a_preempting_canary_are_rolled_back() -> None:
    _, starved = judge_window(JudgeState(), PLAN, cohort(20), cohort(1800, instances=9))
    assert metric_of(starved, "throughput")["exceeded"]
    assert starved.decision == "rollback"
    _, preempting = judge_window(
        JudgeState(), PLAN, cohort(200, preemptions=40), cohort(1800, instances=9, preemptions=18)
    )
    assert metric_of(preempting, "preemptions")["exceeded"]
    _, unknown = judge_window(JudgeState(), PLAN, cohort(200, preemptions=None), cohort(1800, instances=9))
    assert metric_of(unknown, "preemptions")["judged"] is False


def test_large_counts_stay_exact_and_finite() -> None:
    state, judgement = judge_window(JudgeState(), PLAN, cohort(5_000_000), cohort(5_000_000, instances=9))
    assert judgement.decision == "continue"
    # Within the margin: millions of requests prove a difference, but not one beyond the tolerance.
    _, within = judge_window(state, PLAN, cohort(5_000_000, (0.8, 0.4, 0.12, 0.01)), cohort(5_000_000, instances=9))
    assert within.decision == "continue"
    fresh = JudgeState()
    _, judgement = judge_window(fresh, PLAN, cohort(5_000_000, (0.8, 0.4, 0.3, 0.01)), cohort(5_000_000, instances=9))
    assert judgement.decision == "rollback"
    assert finite_everywhere(msgspec.to_builtins(judgement))


def test_a_plan_without_edges_never_decides_on_latency() -> None:
    plan = plan_margins(CohortCounts(), Tolerances())
    assert isinstance(plan, JudgePlan)
    _, judgement = judge_window(JudgeState(), plan, cohort(120), cohort(1080, instances=9))
    assert metric_of(judgement, "ttft_s")["evidence"] == 1.0
    assert judgement.decision == "continue"


def test_a_regression_that_starts_late_is_still_caught() -> None:
    """Harmless windows pile up evidence for the null; the mixture over start times forgets it."""
    state = JudgeState()
    for _ in range(40):
        state, judgement = judge_window(state, PLAN, cohort(600, instances=5), cohort(600, instances=5))
        assert judgement.decision == "continue"
    sums = state.metrics["ttft_s"].edges["ttft_s:0.4"]
    assert all(math.isfinite(value) for value in sums)
    slower = cohort(600, (0.95, 0.8, 0.4, 0.1), instances=5)
    state, judgement = judge_window(state, PLAN, slower, cohort(600, instances=5))
    assert judgement.decision == "rollback"
