"""The health gate with plain numbers: every verdict path, its evidence, and what the stage does next."""

from __future__ import annotations

import msgspec
import pytest

from performance_agent.metrics.builder import AggregateFigures
from performance_agent.metrics.snapshot import Errors, Latency, Load, Quantiles, Throughput
from performance_agent.workflows.gate import (
    GateResult,
    StageProgress,
    cohort_summary,
    decide_after_window,
    evaluate_window,
)
from performance_agent.workflows.policy import Guardrails, MonitorPolicy
from performance_agent.workflows.schemas import CohortFigures

RULES = Guardrails(min_samples=100)
MONITOR = MonitorPolicy(duration_s=60, interval_s=10, warmup_s=10, min_passing_windows=2, inconclusive_timeout_s=30)


def cohort(**overrides: float | int | None) -> CohortFigures:
    base: dict[str, float | int | None] = {
        "instances": 2,
        "requests": 400.0,
        "requests_per_s_per_instance": 8.0,
        "ttft_p99_s": 0.2,
        "itl_p99_s": 0.05,
        "e2e_p99_s": 10.0,
        "error_rate": 0.001,
        "preemptions_per_s_per_instance": 0.0,
    }
    base.update(overrides)
    return msgspec.convert(base, CohortFigures)


def check(result: GateResult, metric: str) -> dict[str, object]:
    found = next(c for c in result.checks if c.metric == metric)
    return msgspec.structs.asdict(found)


def test_equal_cohorts_pass_with_every_comparison_recorded() -> None:
    result = evaluate_window(cohort(), cohort(), RULES)
    assert result.verdict == "pass"
    assert not result.critical
    assert result.reasons == []
    assert {c.metric for c in result.checks} == {
        "error_rate",
        "requests_per_s_per_instance_decrease",
        "ttft_p99_s",
        "itl_p99_s",
        "e2e_p99_s",
        "error_rate_increase",
        "preemptions_per_s_increase",
    }
    assert check(result, "ttft_p99_s") == {
        "metric": "ttft_p99_s",
        "kind": "relative",
        "canary": 0.2,
        "reference": 0.2,
        "threshold": 0.2,
        "observed": 0.0,
        "passed": True,
        "critical": False,
    }


@pytest.mark.parametrize(
    ("field", "canary_value", "reference_value", "limit"),
    [("ttft_p99_s", 0.25, 0.2, 0.2), ("itl_p99_s", 0.06, 0.05, 0.15), ("e2e_p99_s", 12.5, 10.0, 0.2)],
)
def test_latency_increase_over_its_threshold_fails(
    field: str, canary_value: float, reference_value: float, limit: float
) -> None:
    result = evaluate_window(cohort(**{field: canary_value}), cohort(**{field: reference_value}), RULES)
    assert result.verdict == "fail"
    assert not result.critical
    evidence = check(result, field)
    assert evidence["passed"] is False
    assert evidence["observed"] == pytest.approx(canary_value / reference_value - 1)
    assert evidence["threshold"] == limit
    assert field in result.reasons[0]


def test_increase_exactly_at_the_threshold_passes() -> None:
    result = evaluate_window(cohort(ttft_p99_s=0.24), cohort(ttft_p99_s=0.2), Guardrails(min_samples=100))
    assert check(result, "ttft_p99_s")["observed"] == pytest.approx(0.2)
    assert result.verdict == "pass"


def test_absolute_error_rate_breach_is_critical_even_when_control_is_as_bad() -> None:
    result = evaluate_window(cohort(error_rate=0.05), cohort(error_rate=0.05), RULES)
    assert result.verdict == "fail"
    assert result.critical
    assert result.reasons == ["critical: error_rate 0.05 is above the limit 0.02"]


def test_error_rate_increase_is_measured_in_points() -> None:
    rules = Guardrails(min_samples=100, max_error_rate=0.5, max_error_rate_increase=0.01)
    result = evaluate_window(cohort(error_rate=0.015), cohort(error_rate=0.004), rules)
    assert result.verdict == "fail"
    assert check(result, "error_rate_increase")["observed"] == pytest.approx(0.011)
    ok = evaluate_window(cohort(error_rate=0.012), cohort(error_rate=0.004), rules)
    assert ok.verdict == "pass"


def test_optional_absolute_limits_apply_only_when_set() -> None:
    slow = cohort(ttft_p99_s=3.0, preemptions_per_s_per_instance=2.0)
    same = cohort(ttft_p99_s=3.0, preemptions_per_s_per_instance=2.0)
    assert evaluate_window(slow, same, RULES).verdict == "pass"
    rules = Guardrails(min_samples=100, max_ttft_p99_s=2.0, max_preemptions_per_s=1.0)
    result = evaluate_window(slow, same, rules)
    assert result.verdict == "fail"
    assert result.critical
    assert len(result.reasons) == 2


def test_preemption_increase_ignores_noise_but_catches_a_jump() -> None:
    assert evaluate_window(cohort(preemptions_per_s_per_instance=0.005), cohort(), RULES).verdict == "pass"
    jump = evaluate_window(cohort(preemptions_per_s_per_instance=0.5), cohort(), RULES)
    assert jump.verdict == "fail"
    assert check(jump, "preemptions_per_s_increase")["passed"] is False
    doubled = evaluate_window(
        cohort(preemptions_per_s_per_instance=0.5), cohort(preemptions_per_s_per_instance=0.2), RULES
    )
    assert doubled.verdict == "fail"
    assert check(doubled, "preemptions_per_s_increase")["observed"] == pytest.approx(1.5)


def test_too_few_canary_requests_is_inconclusive_not_pass() -> None:
    result = evaluate_window(cohort(requests=99.0, requests_per_s_per_instance=7.0), cohort(), RULES)
    assert result.verdict == "inconclusive"
    assert "fewer than min_samples 100" in result.reasons[0]


def test_a_starved_canary_fails_even_below_min_samples() -> None:
    result = evaluate_window(cohort(requests=12.0, requests_per_s_per_instance=0.4), cohort(), RULES)
    assert result.verdict == "fail"
    assert check(result, "requests_per_s_per_instance_decrease")["observed"] == pytest.approx(0.95)


def test_too_few_control_requests_is_inconclusive() -> None:
    result = evaluate_window(cohort(), cohort(requests=50.0), RULES)
    assert result.verdict == "inconclusive"
    assert result.reasons == ["control served 50 requests, fewer than min_samples 100"]


def test_no_reference_is_inconclusive_and_names_it() -> None:
    result = evaluate_window(cohort(), None, RULES, reference_name="baseline")
    assert result.verdict == "inconclusive"
    assert result.reasons == ["no baseline figures to compare with"]


def test_unknown_figures_everywhere_are_inconclusive() -> None:
    blank = cohort(
        ttft_p99_s=None, itl_p99_s=None, e2e_p99_s=None, error_rate=None, preemptions_per_s_per_instance=None
    )
    result = evaluate_window(blank, blank, RULES)
    assert result.verdict == "inconclusive"
    assert result.reasons == ["no figure is known for both canary and control"]


def test_canary_scrape_error_fails_by_default_and_is_inconclusive_when_configured() -> None:
    failed = evaluate_window(cohort(), cohort(), RULES, canary_errors={"v-1": "upstream_unreachable"})
    assert failed.verdict == "fail"
    assert failed.reasons == ["canary scrape failed: v-1 (upstream_unreachable)"]
    lenient = Guardrails(min_samples=100, on_canary_scrape_error="inconclusive")
    assert evaluate_window(cohort(), cohort(), lenient, canary_errors={"v-1": "upstream_timeout"}).verdict == (
        "inconclusive"
    )


def test_control_scrape_error_is_inconclusive() -> None:
    result = evaluate_window(cohort(ttft_p99_s=9.0), cohort(), RULES, control_errors={"v-3": "upstream_timeout"})
    assert result.verdict == "inconclusive"
    assert result.reasons == ["control scrape failed: v-3 (upstream_timeout)"]


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

PASS = GateResult("pass", False, [])
FAIL = GateResult("fail", False, ["ttft up"])
CRITICAL = GateResult("fail", True, ["critical: errors"])
UNSURE = GateResult("inconclusive", False, ["few requests"])


def progress() -> StageProgress:
    return StageProgress(monitor_started_at=0.0, warmup_until=10.0, stage_deadline=60.0)


def decide(state: StageProgress, result: GateResult, now: float, *, may_advance: bool = True) -> str:
    decision = decide_after_window(state, result, now=now, rules=RULES, monitor=MONITOR, may_advance=may_advance)
    return decision.step


def test_critical_breach_rolls_back_at_once() -> None:
    state = progress()
    decision = decide_after_window(state, CRITICAL, now=20, rules=RULES, monitor=MONITOR, may_advance=False)
    assert decision.step == "rollback"
    assert decision.reason == "guardrail breach: critical: errors"


def test_two_consecutive_failures_roll_back_and_a_pass_resets_the_streak() -> None:
    state = progress()
    assert decide(state, FAIL, 20) == "continue"
    assert decide(state, PASS, 30) == "continue"
    assert state.consecutive_failures == 0
    assert decide(state, FAIL, 40) == "continue"
    assert decide(state, UNSURE, 50) == "continue"  # inconclusive neither passes nor breaks the streak
    assert state.consecutive_failures == 1
    decision = decide_after_window(state, FAIL, now=60, rules=RULES, monitor=MONITOR, may_advance=True)
    assert decision.step == "rollback"
    assert decision.reason == "2 consecutive failed windows: ttft up"


def test_advance_needs_the_duration_enough_passes_and_a_passing_last_window() -> None:
    state = progress()
    assert decide(state, PASS, 20) == "continue"
    assert decide(state, PASS, 30) == "continue"  # two passes, but only 30 of 60 s
    assert decide(state, PASS, 60) == "advance"
    late = progress()
    assert decide(late, PASS, 61) == "continue"  # one pass is not enough
    assert decide(late, FAIL, 71) == "continue"
    assert decide(late, PASS, 81) == "advance"


def test_held_stages_never_advance_or_pause_but_still_roll_back() -> None:
    state = progress()
    for now in (20, 30, 60, 200):
        assert decide(state, PASS, now, may_advance=False) == "continue"
    assert decide(state, UNSURE, 500, may_advance=False) == "continue"
    assert decide(state, FAIL, 510, may_advance=False) == "continue"
    assert decide(state, FAIL, 520, may_advance=False) == "rollback"


def test_inconclusive_for_too_long_pauses_with_the_reason() -> None:
    state = progress()
    assert decide(state, UNSURE, 20) == "continue"
    decision = decide_after_window(state, UNSURE, now=40, rules=RULES, monitor=MONITOR, may_advance=True)
    assert decision.step == "pause"
    assert decision.reason == "inconclusive for 30 s (limit 30 s): few requests"
    since_pass = progress()
    assert decide(since_pass, PASS, 35) == "continue"
    assert decide(since_pass, UNSURE, 60) == "continue"  # 25 s since the last conclusive window
    assert decide(since_pass, UNSURE, 65) == "pause"
