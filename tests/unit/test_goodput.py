"""Goodput from buckets, checked against counts worked out by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from performance_agent.engines.base import AdaptedPage
from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.builder import RawScrape, aggregate_window, build_snapshot
from performance_agent.metrics.goodput import LatencyTarget, goodput, goodput_targets, share_within
from performance_agent.metrics.snapshot import CumulativeHistogram, RawSeries

INF = math.inf
T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

# 100 requests: 60 at or below 0.5 s, 90 at or below 1 s, 98 at or below 2.5 s.
TTFT = CumulativeHistogram(buckets=[(0.5, 60.0), (1.0, 90.0), (2.5, 98.0), (INF, 100.0)], sum=70.0, count=100.0)
# The same 100 requests end to end: 95 at or below 10 s, 99 at or below 30 s.
E2E = CumulativeHistogram(buckets=[(10.0, 95.0), (30.0, 99.0), (INF, 100.0)], sum=600.0, count=100.0)
# 1,000 token gaps: 990 at or below 0.1 s.
ITL = CumulativeHistogram(buckets=[(0.05, 900.0), (0.1, 990.0), (INF, 1000.0)], sum=40.0, count=1000.0)


def test_a_target_at_an_edge_is_exact() -> None:
    within = share_within(TTFT, 1.0)
    assert within is not None
    assert within.lower == within.upper == pytest.approx(0.90)
    assert within.exact
    assert within.edge_s == 1.0
    assert within.observations == 100.0


def test_a_target_between_edges_is_bounded_by_the_edges_around_it() -> None:
    within = share_within(TTFT, 2.0)  # between 1 s (90) and 2.5 s (98)
    assert within is not None
    assert not within.exact
    assert within.lower == pytest.approx(0.90)
    assert within.upper == pytest.approx(0.98)
    assert within.edge_s == 1.0


def test_a_target_below_the_first_edge_has_the_trivial_lower_bound() -> None:
    within = share_within(TTFT, 0.1)
    assert within is not None
    assert within.lower == 0.0
    assert within.upper == pytest.approx(0.60)
    assert within.edge_s is None
    assert not within.exact


def test_an_empty_or_open_histogram_tells_nothing() -> None:
    empty = CumulativeHistogram(buckets=[(1.0, 0.0), (INF, 0.0)], sum=0.0, count=0.0)
    no_inf = CumulativeHistogram(buckets=[(1.0, 3.0)], sum=1.0, count=3.0)
    assert share_within(empty, 1.0) is None
    assert share_within(no_inf, 1.0) is None


def test_the_joint_share_is_the_frechet_lower_bound_over_request_targets() -> None:
    targets = [
        LatencyTarget("ttft_p99_s", "ttft_s", 1.0),
        LatencyTarget("e2e_p99_s", "e2e_s", 30.0),
        LatencyTarget("itl_p99_s", "itl_s", 0.1, per_token=True),
    ]
    found = goodput({"ttft_s": TTFT, "e2e_s": E2E, "itl_s": ITL}, targets)
    assert found is not None
    # 1 - (1 - 0.90) - (1 - 0.99) = 0.89; ITL (tokens) is reported but not in the request share.
    assert found.share == pytest.approx(0.89)
    assert not found.exact
    assert [t.objective for t in found.targets] == ["ttft_p99_s", "e2e_p99_s", "itl_p99_s"]
    assert found.targets[2].per_token
    assert found.targets[2].share == pytest.approx(0.99)
    assert found.missing == []


def test_a_single_request_target_at_an_edge_is_exact_goodput() -> None:
    found = goodput({"ttft_s": TTFT}, [LatencyTarget("ttft_p99_s", "ttft_s", 0.5)])
    assert found is not None
    assert found.share == pytest.approx(0.60)
    assert found.exact


def test_the_joint_bound_is_clipped_at_zero() -> None:
    targets = [LatencyTarget("ttft_p99_s", "ttft_s", 0.5), LatencyTarget("e2e_p99_s", "e2e_s", 5.0)]
    found = goodput({"ttft_s": TTFT, "e2e_s": E2E}, targets)
    assert found is not None
    # 0.60 and 0 (no e2e edge at or below 5 s): 1 - 0.4 - 1 < 0.
    assert found.share == 0.0


def test_missing_histograms_give_null_and_are_named() -> None:
    targets = [LatencyTarget("ttft_p99_s", "ttft_s", 1.0), LatencyTarget("e2e_p99_s", "e2e_s", 30.0)]
    assert goodput({}, targets) is None
    assert goodput({"ttft_s": TTFT}, []) is None
    partial = goodput({"ttft_s": TTFT}, targets)
    assert partial is not None
    assert partial.share == pytest.approx(0.90)
    assert partial.missing == ["e2e_p99_s"]


def test_only_a_token_level_target_gives_no_request_share() -> None:
    found = goodput({"itl_s": ITL}, [LatencyTarget("itl_p99_s", "itl_s", 0.1, per_token=True)])
    assert found is not None
    assert found.share is None
    assert found.targets[0].share == pytest.approx(0.99)


def test_slo_targets_map_to_the_p99_limits() -> None:
    targets = goodput_targets(SloTargets(ttft_p99_s=1.5, e2e_p99_s=20.0, itl_p99_s=0.05))
    assert [(t.objective, t.histogram, t.limit_s, t.per_token) for t in targets] == [
        ("ttft_p99_s", "ttft_s", 1.5, False),
        ("e2e_p99_s", "e2e_s", 20.0, False),
        ("itl_p99_s", "itl_s", 0.05, True),
    ]


def _scrape(seconds: float, ttft_counts: list[float], *, start: float = 1.0e9) -> RawScrape:
    histogram = CumulativeHistogram(
        buckets=list(zip((0.5, 1.0, 2.5, INF), ttft_counts, strict=True)), sum=1.0, count=ttft_counts[-1]
    )
    series = RawSeries(histograms={"ttft_s": histogram}, process_start_time_s=start)
    return RawScrape(collected_at=T0 + timedelta(seconds=seconds), total=series)


def test_a_window_measures_goodput_on_summed_increases_across_a_restart() -> None:
    scrapes = [
        _scrape(0, [10, 10, 10, 10]),
        _scrape(60, [40, 60, 68, 70]),  # +30 +50 +58 +60: 50 of 60 within 1 s
        _scrape(120, [5, 15, 19, 20], start=1.1e9),  # restarted: 15 of 20 within 1 s
    ]
    target = [LatencyTarget("ttft_p99_s", "ttft_s", 1.0)]
    figures = aggregate_window(scrapes, goodput_targets=target)
    assert figures.goodput is not None
    assert figures.goodput.share == pytest.approx((50 + 15) / 80)
    assert figures.goodput.exact
    assert aggregate_window(scrapes).goodput is None  # no targets: null


def test_a_snapshot_carries_goodput_only_with_targets() -> None:
    before, after = _scrape(0, [10, 10, 10, 10]), _scrape(15, [30, 50, 59, 60])
    page = AdaptedPage(engine="vllm", total=after.total, models={})
    common = {
        "instance_id": "i-1",
        "engine": "vllm",
        "endpoint": "http://127.0.0.1:8000",
        "collected_at": after.collected_at,
        "current": page,
        "previous": before,
    }
    with_targets = build_snapshot(**common, goodput_targets=[LatencyTarget("ttft_p99_s", "ttft_s", 2.0)])  # type: ignore[arg-type]
    assert with_targets.goodput is not None
    # 50 increases, 40 within 1 s (the largest edge at or below 2 s): a lower bound; 49 within 2.5 s.
    assert with_targets.goodput.share == pytest.approx(40 / 50)
    assert with_targets.goodput.targets[0].share_upper == pytest.approx(49 / 50)
    assert not with_targets.goodput.exact
    assert build_snapshot(**common).goodput is None  # type: ignore[arg-type]
