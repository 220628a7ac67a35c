"""The health gate with plain numbers: every verdict path, its evidence, and what the stage does next.

The judge itself (margins, e-values) is tested in the judge package's own tests; here real
`judge_window` results on small hand-made cohorts drive the gate, so what is checked is the
wiring: verdicts, reasons, the `checks` summary, and the stage's advance/extend/pause/rollback.
"""

from __future__ import annotations

import pytest

from performance_agent.judge import (
    BucketCounts,
    CohortCounts,
    JudgePlan,
    JudgeSettings,
    JudgeState,
    Tolerances,
    WindowJudgement,
    judge_window,
    plan_margins,
)
from performance_agent.metrics.builder import AggregateFigures
from performance_agent.metrics.snapshot import Errors, Latency, Load, Quantiles, Throughput
from performance_agent.workflows.gate import (
    GateResult,
    StageProgress,
    checks_of,
    cohort_summary,
    decide_after_window,
    judged,
    scrape_failure,
)
from performance_agent.workflows.policy import Guardrails, MonitorPolicy
from performance_agent.workflows.schemas import CohortFigures

RULES = Guardrails()
MONITOR = MonitorPolicy(duration_s=60, interval_s=10, warmup_s=10, min_passing_windows=2, inconclusive_timeout_s=30)
SETTINGS = JudgeSettings(min_canary_requests=1000, max_stage_extension_s=40)
EDGES = [0.1, 0.25, 0.5, 0.75, 1.0, 2.5]
#: Cumulative share at or below each edge of a TTFT distribution; `slower` moves every request 4x slower.
SHAPE = [0.65, 0.85, 0.94, 0.97, 0.985, 0.998]
SLOWER = [0.05, 0.3, 0.65, 0.78, 0.85, 0.985]


def cohort(requests: float, shape: list[float] = SHAPE, *, instances: int = 2, errors: float = 0.0) -> CohortCounts:
    counts = BucketCounts(edges=EDGES, counts_le=[round(requests * share) for share in shape], total=requests)
    return CohortCounts(
        instances=instances, requests=requests, errors=errors, preemptions=0.0, histograms={"ttft_s": counts}
    )


def plan() -> JudgePlan:
    return plan_margins(cohort(6000, instances=4), Tolerances.from_guardrails(RULES), SETTINGS)


def judge(canary: CohortCounts, reference: CohortCounts | None) -> WindowJudgement:
    _, judgement = judge_window(JudgeState(), plan(), canary, reference)
    return judgement


# ------------------------------------------------------------------------------ verdicts


def test_equal_cohorts_pass_and_every_judged_metric_is_summarised() -> None:
    judgement = judge(cohort(400), cohort(400))
    result = judged(judgement)
    assert (result.verdict, result.critical, result.reasons) == ("pass", False, [])
    assert result.judgement is judgement
    metrics = {check.metric for check in result.checks}
    assert {"ttft_s", "error_rate", "error_rate_increase", "throughput"} <= metrics
    ttft = next(check for check in result.checks if check.metric == "ttft_s")
    evidence = next(metric for metric in judgement.metrics if metric.metric == "ttft_s")
    assert (ttft.kind, ttft.critical, ttft.passed) == ("relative", False, True)
    assert ttft.threshold == evidence.threshold == judgement.threshold
    assert ttft.observed == evidence.evidence < ttft.threshold
    worst = max(evidence.edges, key=lambda edge: edge.evidence)
    assert (ttft.canary, ttft.reference) == (worst.canary_share, worst.reference_share)


def test_a_four_times_slower_canary_fails_with_the_metric_named() -> None:
    result = judged(judge(cohort(120, SLOWER, instances=1), cohort(1080, instances=7)))
    assert result.verdict == "fail"
    assert not result.critical
    assert any(reason.startswith("ttft_s beyond max_ttft_p99_increase 0.2") for reason in result.reasons)
    ttft = next(check for check in result.checks if check.metric == "ttft_s")
    assert ttft.passed is False
    assert ttft.observed is not None
    assert ttft.observed >= ttft.threshold


def test_an_error_rate_over_the_absolute_limit_is_critical() -> None:
    result = judged(judge(cohort(2000, errors=400), cohort(2000, errors=2)))
    assert (result.verdict, result.critical) == ("fail", True)
    assert any(reason.startswith("critical: error_rate beyond max_error_rate 0.02") for reason in result.reasons)
    limit = next(check for check in result.checks if check.metric == "error_rate")
    assert (limit.kind, limit.critical, limit.passed) == ("absolute", True, False)


def test_a_metric_without_data_is_not_passed() -> None:
    no_histogram = CohortCounts(instances=1, requests=400, errors=0.0, preemptions=0.0)
    judgement = judge(no_histogram, cohort(400))
    ttft = next(check for check in checks_of(judgement) if check.metric == "ttft_s")
    assert ttft.passed is None


def test_canary_scrape_errors_fail_by_default_and_are_inconclusive_when_configured() -> None:
    failed = scrape_failure(RULES, {"c1": "upstream_timeout", "c0": "upstream_unreachable"}, {})
    assert failed == GateResult(
        "fail", False, ["canary scrape failed: c0 (upstream_unreachable), c1 (upstream_timeout)"]
    )
    lenient = Guardrails(on_canary_scrape_error="inconclusive")
    assert scrape_failure(lenient, {"c0": "upstream_error"}, {}) == GateResult(
        "inconclusive", False, ["canary scrape failed: c0 (upstream_error)"]
    )


def test_a_control_scrape_error_is_inconclusive_and_a_clean_window_is_none() -> None:
    assert scrape_failure(RULES, {}, {"k0": "upstream_error"}) == GateResult(
        "inconclusive", False, ["control scrape failed: k0 (upstream_error)"]
    )
    assert scrape_failure(RULES, {}, {}) is None


def test_cohort_summary_reads_the_window_figures() -> None:
    figures = AggregateFigures(
        window_s=10.0,
        instances=2,
        latency=Latency(
            ttft_s=Quantiles(p99=0.3, count=150.0), itl_s=Quantiles(p99=0.04), e2e_s=Quantiles(p99=7.0, count=140.0)
        ),
        throughput=Throughput(requests_per_s=16.0),
        load=Load(preemptions_per_s=1.0),
        errors=Errors(error_rate=0.01),
    )
    assert cohort_summary(figures) == CohortFigures(
        instances=2,
        requests=160.0,  # finished requests from the rate, not a histogram's count
        requests_per_s_per_instance=8.0,
        ttft_p99_s=0.3,
        itl_p99_s=0.04,
        e2e_p99_s=7.0,
        error_rate=0.01,
        preemptions_per_s_per_instance=0.5,
    )
    no_rate = AggregateFigures(window_s=10.0, instances=1, latency=Latency(e2e_s=Quantiles(count=25.0)))
    assert cohort_summary(no_rate).requests == 25.0
    ttft_only = AggregateFigures(instances=1, latency=Latency(ttft_s=Quantiles(count=12.0)))
    assert cohort_summary(ttft_only).requests == 12.0
    assert cohort_summary(AggregateFigures()).requests_per_s_per_instance is None


# ------------------------------------------------------------------------------ decisions


def progress() -> StageProgress:
    return StageProgress(monitor_started_at=0.0, warmup_until=10.0, stage_deadline=60.0)


def passing(requests: float = 400) -> GateResult:
    return judged(judge(cohort(requests), cohort(requests)))


def decide(state: StageProgress, result: GateResult, now: float, *, may_advance: bool = True) -> tuple[str, str | None]:
    decision = decide_after_window(
        state, result, now=now, rules=RULES, monitor=MONITOR, settings=SETTINGS, may_advance=may_advance
    )
    return decision.step, decision.reason


def test_the_judge_s_rollback_rolls_back_at_once_with_its_reasons() -> None:
    state = progress()
    step, reason = decide(state, judged(judge(cohort(120, SLOWER, instances=1), cohort(1080))), 20.0)
    assert step == "rollback"
    assert reason is not None
    assert reason.startswith("evidence against the canary: ttft_s beyond max_ttft_p99_increase 0.2")
    critical = judged(judge(cohort(2000, errors=400), cohort(2000)))
    step, reason = decide(progress(), critical, 20.0)
    assert step == "rollback"
    assert reason is not None
    assert reason.startswith("guardrail breach: critical: error_rate")


def test_consecutive_unreadable_canaries_roll_back_and_a_judged_window_resets_the_streak() -> None:
    unreadable = scrape_failure(RULES, {"c0": "upstream_unreachable"}, {})
    assert unreadable is not None
    state = progress()
    assert decide(state, unreadable, 20.0)[0] == "continue"
    assert decide(state, passing(), 30.0)[0] == "continue"
    assert state.consecutive_failures == 0
    assert decide(state, unreadable, 40.0)[0] == "continue"
    step, reason = decide(state, unreadable, 50.0)
    assert step == "rollback"
    assert reason == "2 consecutive failed windows: canary scrape failed: c0 (upstream_unreachable)"


def test_advance_needs_the_duration_the_pooled_floor_and_enough_judged_windows() -> None:
    state = progress()
    assert decide(state, passing(600), 30.0)[0] == "continue"  # before the deadline
    assert state.canary_requests == 600
    assert decide(state, passing(300), 60.0)[0] == "continue"  # over, but 900 < 1000 requests: extended
    assert decide(state, passing(300), 70.0) == (
        "advance",
        "stage over with no rollback evidence; canary served 1200 requests",
    )
    one_window = progress()
    assert decide(one_window, passing(5000), 60.0)[0] == "continue"  # min_passing_windows is 2


def test_too_little_canary_traffic_extends_the_stage_then_pauses_with_the_reason() -> None:
    state = progress()
    for now in (20.0, 40.0, 60.0, 80.0):
        assert decide(state, passing(100), now)[0] == "continue"
    step, reason = decide(state, passing(100), 100.0)  # deadline 60 s + extension 40 s
    assert step == "pause"
    assert reason is not None
    assert reason.startswith("not enough canary traffic to judge: 500 requests in the stage, at least 1000 needed")


def test_held_stages_never_advance_or_pause_but_still_roll_back() -> None:
    state = progress()
    for now in (60.0, 100.0, 200.0):
        assert decide(state, passing(100), now, may_advance=False)[0] == "continue"
    slow = judged(judge(cohort(120, SLOWER, instances=1), cohort(1080)))
    assert decide(state, slow, 210.0, may_advance=False)[0] == "rollback"


@pytest.mark.parametrize("control_down_for_s", [20.0, 30.0])
def test_unreadable_windows_for_too_long_pause_with_the_reason(control_down_for_s: float) -> None:
    unreadable = scrape_failure(RULES, {}, {"k0": "upstream_error"})
    assert unreadable is not None
    state = progress()
    step, reason = decide(state, unreadable, 10.0 + control_down_for_s)
    if control_down_for_s < MONITOR.inconclusive_timeout_s:
        assert step == "continue"
        return
    assert step == "pause"
    assert reason == "no window could be judged for 30 s (limit 30 s): control scrape failed: k0 (upstream_error)"
