"""The judge's plan from a baseline, checked by hand: edges, margins, limits, goodput edges, K and threshold."""

from __future__ import annotations

import math
from types import SimpleNamespace

import msgspec
import pytest

from performance_agent.judge import BucketCounts, CohortCounts, JudgeSettings, Tolerances, plan_margins
from performance_agent.judge.likelihood import upper_confidence_bound
from performance_agent.judge.plan import JudgePlan, MetricPlan
from performance_agent.workflows.policy import Guardrails
from tests.unit.judge_support import EDGES, cohort

BASELINE = cohort(1000, instances=10, errors=4)  # shares above 0.1/0.2/0.4/0.8 s: 80%, 40%, 10%, 1%


def metric(plan: JudgePlan, name: str) -> MetricPlan:
    return next(item for item in plan.metrics if item.metric == name)


def interpolated(point: float, low: float, high: float, s_low: float, s_high: float) -> float:
    weight = math.log(point / low) / math.log(high / low)
    return math.exp(math.log(s_low) + weight * (math.log(s_high) - math.log(s_low)))


def test_margins_are_odds_ratios_of_the_log_log_interpolated_baseline() -> None:
    plan = plan_margins(BASELINE, Tolerances(max_ttft_p99_increase=0.25))
    ttft = metric(plan, "ttft_s")
    assert [edge.edge for edge in ttft.edges] == [0.2, 0.4, 0.8]  # 0.1 has 80% above: outside [0.1%, 50%]
    by_edge = {edge.edge: edge for edge in ttft.edges}
    tolerated = interpolated(0.32, 0.2, 0.4, 0.4, 0.1)
    assert tolerated == pytest.approx(0.1563, abs=1e-4)
    assert by_edge[0.4].tolerated_share == pytest.approx(tolerated)
    assert by_edge[0.4].margin == pytest.approx((tolerated / (1 - tolerated)) / (0.1 / 0.9))
    assert by_edge[0.4].margin == pytest.approx(1.667, abs=1e-3)
    assert by_edge[0.8].tolerated_share == pytest.approx(interpolated(0.64, 0.4, 0.8, 0.1, 0.01))
    assert all(edge.source == "ttft_s" and edge.margin > 1 for edge in ttft.edges)


def test_without_a_control_the_canary_is_held_to_the_baselines_upper_bound() -> None:
    plan = plan_margins(BASELINE, Tolerances(max_ttft_p99_increase=0.25))
    edge = metric(plan, "ttft_s").edges[1]
    delta = 0.05 * 0.1 / 7 / 3  # baseline share of alpha, per metric, per edge
    upper = upper_confidence_bound(100, 1000, delta)
    expected = edge.margin * upper / (1 - upper)
    assert edge.baseline_tolerated_share == pytest.approx(expected / (1 + expected))
    assert edge.baseline_tolerated_share > edge.tolerated_share
    increase = metric(plan, "error_rate_increase")
    assert increase.tolerated_share == pytest.approx(upper_confidence_bound(4, 1000, 0.05 * 0.1 / 7) + 0.01)


def test_default_plan_judges_seven_metrics_with_threshold_200() -> None:
    plan = plan_margins(BASELINE, Tolerances())
    assert plan.metric_count == 7
    assert plan.threshold == 200
    assert plan.log_threshold == pytest.approx(math.log(200))
    assert [item.metric for item in plan.metrics] == [
        "ttft_s",
        "itl_s",
        "e2e_s",
        "error_rate",
        "error_rate_increase",
        "throughput",
        "preemptions",
    ]
    assert metric(plan, "itl_s").note == "no baseline buckets"
    assert metric(plan, "error_rate").critical
    assert metric(plan, "error_rate").tolerated_share == 0.02
    assert plan.alternatives == [1.25, 1.5, 2.0, 3.0, 5.0, 10.0]
    assert plan_margins(BASELINE, Tolerances(), JudgeSettings(alpha=0.01)).threshold == 1000


def test_absolute_limits_use_the_first_edge_at_or_above_the_limit() -> None:
    tolerances = Tolerances(max_ttft_p99_s=0.3, max_e2e_p99_s=1.0, max_queue_p99_increase=0.5)
    plan = plan_margins(BASELINE, tolerances)
    limit = metric(plan, "ttft_s_limit")
    assert limit.critical
    assert limit.kind == "latency_limit"
    assert [edge.edge for edge in limit.edges] == [0.4]
    assert limit.tolerated_share == 0.01
    assert metric(plan, "e2e_s_limit").note == "no bucket edge at or above the limit"
    assert metric(plan, "queue_s").edges == []
    assert plan.metric_count == 10
    assert plan.threshold == pytest.approx(10 / 0.035)
    beyond = plan_margins(BASELINE, Tolerances(max_ttft_p99_s=5.0))
    assert metric(beyond, "ttft_s_limit").edges == []


def test_goodput_uses_the_last_edge_meeting_each_target() -> None:
    plan = plan_margins(BASELINE, Tolerances(slo_targets_s={"ttft_s": 0.3, "e2e_s": 2.0}))
    goodput = metric(plan, "goodput")
    assert [(edge.source, edge.edge) for edge in goodput.edges] == [("ttft_s", 0.2)]
    assert goodput.edges[0].baseline_share == pytest.approx(0.4)
    assert goodput.tolerance == 0.02
    none = plan_margins(BASELINE, Tolerances(slo_targets_s={"ttft_s": 0.05}))
    assert metric(none, "goodput").edges == []
    assert metric(none, "goodput").note is not None


def test_sparse_or_missing_baselines_leave_edges_out() -> None:
    sparse = CohortCounts(
        requests=40, histograms={"ttft_s": BucketCounts(edges=EDGES, counts_le=[8, 24, 36, 39], total=40)}
    )
    edges = [edge.edge for edge in metric(plan_margins(sparse, Tolerances()), "ttft_s").edges]
    assert edges == [0.2]  # 0.4 has only 4 requests above, 0.8 one
    empty = plan_margins(CohortCounts(), Tolerances())
    assert metric(empty, "ttft_s").note == "no baseline buckets"
    assert metric(empty, "error_rate_increase").tolerated_share is None
    reset = CohortCounts(requests=10, histograms={"ttft_s": BucketCounts(edges=[0.1], counts_le=[20], total=10)})
    assert metric(plan_margins(reset, Tolerances()), "ttft_s").edges == []


def test_tolerances_mirror_the_guardrails_by_name() -> None:
    tolerances = Tolerances.from_guardrails(Guardrails(max_ttft_p99_increase=0.3, max_ttft_p99_s=2.0), {"ttft_s": 1.0})
    assert tolerances.max_ttft_p99_increase == 0.3
    assert tolerances.max_ttft_p99_s == 2.0
    assert tolerances.max_queue_p99_increase is None
    assert tolerances.slo_targets_s == {"ttft_s": 1.0}
    assert Tolerances.from_guardrails(object()) == Tolerances()


def test_a_plan_survives_storage() -> None:
    plan = plan_margins(BASELINE, Tolerances(max_ttft_p99_s=0.3))
    assert msgspec.json.decode(msgspec.json.encode(plan), type=JudgePlan) == plan


def test_goodput_is_judged_only_with_targets_and_a_tolerance() -> None:
    assert "goodput" not in [item.metric for item in plan_margins(BASELINE, Tolerances()).metrics]
    off = plan_margins(BASELINE, Tolerances(slo_targets_s={"ttft_s": 0.3}, max_goodput_decrease=None))
    assert "goodput" not in [item.metric for item in off.metrics]
    assert off.metric_count == 7
    unset = Tolerances.from_guardrails(Guardrails(), {"ttft_s": 0.3})
    assert unset.max_goodput_decrease == 0.02
    assert Tolerances.from_guardrails(SimpleNamespace(max_goodput_decrease=None)).max_goodput_decrease == 0.02
    assert Tolerances.from_guardrails(SimpleNamespace(max_goodput_decrease=0.05)).max_goodput_decrease == 0.05
