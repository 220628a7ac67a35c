"""The A/A check on the baseline capture: identical cohorts pass, an already slower first cohort pauses."""

from __future__ import annotations

from performance_agent.judge import Tolerances, aa_check, merge_cohorts, plan_margins
from tests.unit.judge_support import NORMAL, cohort


def test_identical_cohorts_pass() -> None:
    first, rest = cohort(300, NORMAL, instances=1), cohort(2700, NORMAL, instances=9)
    result = aa_check(first, rest, plan_margins(merge_cohorts([first, rest]), Tolerances()))
    assert result.passed
    assert result.reasons == []
    # Three latency metrics (as enabled, with data or not), error increase and throughput: 5 / (alpha * 0.2).
    assert result.threshold == 500
    assert {metric.metric for metric in result.metrics} == {
        "ttft_s",
        "itl_s",
        "e2e_s",
        "error_rate_increase",
        "throughput",
    }


def test_a_first_cohort_that_is_already_slower_pauses_the_workflow() -> None:
    first, rest = cohort(300, (0.95, 0.8, 0.4, 0.1), instances=1), cohort(2700, NORMAL, instances=9)
    result = aa_check(first, rest, plan_margins(merge_cohorts([first, rest]), Tolerances()))
    assert not result.passed
    assert result.reasons[0].startswith("first canary cohort already worse than the rest before any change: ttft_s")


def test_absolute_limits_are_not_part_of_the_check() -> None:
    first, rest = cohort(300, NORMAL, instances=1, errors=30), cohort(2700, NORMAL, instances=9, errors=270)
    plan = plan_margins(merge_cohorts([first, rest]), Tolerances(max_ttft_p99_s=0.3))
    result = aa_check(first, rest, plan)
    assert result.passed  # 10% errors everywhere: the rollout's absolute limit will say so, not the A/A check
    assert all(metric.kind != "latency_limit" and metric.kind != "error_rate" for metric in result.metrics)
