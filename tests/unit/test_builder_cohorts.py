"""Longer windows and cohorts of instances, computed as PromQL would over summed increases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from performance_agent.metrics.builder import AggregateFigures, RawScrape, aggregate_window, cohort_figures
from performance_agent.metrics.histogram import histogram_quantile
from performance_agent.metrics.snapshot import CumulativeHistogram, RawSeries

INF = math.inf
T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
EDGES = (0.1, 0.5, 1.0, INF)


def scrape(
    seconds: float,
    counts: list[float],
    total: float,
    counters: dict[str, float],
    gauges: dict[str, float] | None = None,
    *,
    start: float = 1.0e9,
    models: dict[str, RawSeries] | None = None,
) -> RawScrape:
    series = RawSeries(
        histograms={
            "e2e_s": CumulativeHistogram(buckets=list(zip(EDGES, counts, strict=True)), sum=total, count=counts[-1])
        },
        counters=counters,
        gauges=gauges or {},
        process_start_time_s=start,
    )
    return RawScrape(collected_at=T0 + timedelta(seconds=seconds), total=series, models=models or {})


def test_window_over_several_scrapes_survives_a_restart_inside_it() -> None:
    scrapes = [
        scrape(0, [0, 10, 20, 20], 8.0, {"requests_finished": 20, "requests_failed": 0}),
        scrape(60, [0, 30, 40, 40], 16.0, {"requests_finished": 40, "requests_failed": 1}),
        # restarted: everything went down
        scrape(120, [5, 5, 10, 10], 3.0, {"requests_finished": 10, "requests_failed": 2}, start=1.1e9),
        scrape(
            180,
            [5, 15, 30, 30],
            9.0,
            {"requests_finished": 30, "requests_failed": 2},
            {"requests_running": 4},
            start=1.1e9,
        ),
    ]
    figures = aggregate_window(list(reversed(scrapes)))  # order of the input does not matter
    assert figures.instances == 1
    assert figures.window_s == 180.0
    # increases: 20 (0->60) + 10 (restart) + 20 (120->180) requests
    assert figures.throughput.requests_per_s == pytest.approx(50 / 180)
    assert figures.errors.requests_failed_per_s == pytest.approx((1 + 2 + 0) / 180)
    assert figures.errors.error_rate == pytest.approx(3 / 50)
    e2e = figures.latency.e2e_s
    # summed bucket increases: le=0.1 0+5+0=5, le=0.5 20+5+10=35, le=1 20+10+20=50, +Inf 50
    assert e2e.count == 50
    assert e2e.mean == pytest.approx((8 + 3 + 6) / 50)
    # rank 25 in (0.1, 0.5] holding 30, 20 of them: 0.1 + 0.4 * 20/30
    assert e2e.p50 == pytest.approx(0.1 + 0.4 * 20 / 30)
    assert figures.load.requests_running == 4  # the gauge at the end of the window


def test_first_and_last_only_equals_all_scrapes_without_restart() -> None:
    first = scrape(0, [1, 2, 3, 4], 1.0, {"requests_finished": 4})
    middle = scrape(30, [2, 5, 8, 9], 3.0, {"requests_finished": 9})
    last = scrape(60, [4, 9, 12, 15], 6.0, {"requests_finished": 15})
    assert aggregate_window([first, middle, last]) == aggregate_window([first, last])


def test_cohort_quantiles_come_from_summed_increases_not_averaged_percentiles() -> None:
    # Instance 1: 90 fast requests. Instance 2: 10 slow ones.
    fast = [
        scrape(0, [0, 0, 0, 0], 0.0, {"requests_finished": 0}),
        scrape(60, [90, 90, 90, 90], 4.5, {"requests_finished": 90}),
    ]
    slow = [
        scrape(0, [0, 0, 0, 0], 0.0, {"requests_finished": 0}),
        scrape(30, [0, 0, 10, 10], 8.0, {"requests_finished": 10}),
    ]
    figures = cohort_figures([fast, slow])
    assert figures.instances == 2
    # summed buckets: le=0.1 90, le=0.5 90, le=1 100; rank 95 in (0.5, 1] holding 10, 5 of them
    assert figures.latency.e2e_s.p95 == pytest.approx(0.5 + 0.5 * 5 / 10)
    fast_p95 = histogram_quantile(0.95, [(0.1, 90.0), (0.5, 90.0), (1.0, 90.0), (INF, 90.0)])
    slow_p95 = histogram_quantile(0.95, [(0.1, 0.0), (0.5, 0.0), (1.0, 10.0), (INF, 10.0)])
    assert fast_p95 is not None
    assert slow_p95 is not None
    assert figures.latency.e2e_s.p95 != pytest.approx((fast_p95 + slow_p95) / 2)
    # sum(rate): 90/60 + 10/30
    assert figures.throughput.requests_per_s == pytest.approx(1.5 + 10 / 30)
    assert figures.window_s == 60.0


def test_cohort_gauges_sum_counts_and_take_the_fullest_kv_cache() -> None:
    one = [
        scrape(0, [0, 0, 0, 0], 0, {"prefix_cache_queries": 0, "prefix_cache_hits": 0}),
        scrape(
            10,
            [0, 0, 0, 0],
            0,
            {"prefix_cache_queries": 100, "prefix_cache_hits": 90},
            {"requests_running": 3, "kv_cache_usage": 0.5},
        ),
    ]
    two = [
        scrape(0, [0, 0, 0, 0], 0, {"prefix_cache_queries": 0, "prefix_cache_hits": 0}),
        scrape(
            10,
            [0, 0, 0, 0],
            0,
            {"prefix_cache_queries": 300, "prefix_cache_hits": 10},
            {"requests_running": 5, "kv_cache_usage": 0.8},
        ),
    ]
    figures = cohort_figures([one, two])
    assert figures.load.requests_running == 8
    assert figures.load.kv_cache_usage == 0.8
    assert figures.load.prefix_cache_hit_rate == pytest.approx(100 / 400)  # not the mean of 0.9 and 0.033
    assert figures.latency.e2e_s.p50 is None
    assert figures.latency.e2e_s.count == 0


def test_instances_without_two_scrapes_do_not_count() -> None:
    lonely = [scrape(0, [1, 1, 1, 1], 0.1, {"requests_finished": 1})]
    assert cohort_figures([lonely]) == AggregateFigures()
    assert cohort_figures([]) == AggregateFigures()
    assert aggregate_window(lonely).instances == 0
    pair = [
        scrape(0, [1, 1, 1, 1], 0.1, {"requests_finished": 1}),
        scrape(10, [2, 2, 2, 2], 0.2, {"requests_finished": 2}),
    ]
    assert cohort_figures([lonely, pair]).instances == 1


def test_scrapes_at_the_same_moment_give_no_rates() -> None:
    same = [
        scrape(0, [1, 1, 1, 1], 0.1, {"requests_finished": 1}),
        scrape(0, [1, 1, 1, 1], 0.1, {"requests_finished": 1}),
    ]
    figures = aggregate_window(same)
    assert figures.window_s is None
    assert figures.throughput.requests_per_s is None


def test_one_model_of_a_multi_model_server() -> None:
    def model(value: float) -> RawSeries:
        return RawSeries(counters={"requests_finished": value})

    scrapes = [
        scrape(0, [0, 0, 0, 0], 0, {"requests_finished": 0}, models={"a": model(0), "b": model(0)}),
        scrape(10, [0, 0, 0, 0], 0, {"requests_finished": 30}, models={"a": model(10), "b": model(20)}),
    ]
    assert aggregate_window(scrapes, model_name="b").throughput.requests_per_s == pytest.approx(2.0)
    assert aggregate_window(scrapes).throughput.requests_per_s == pytest.approx(3.0)
    assert aggregate_window(scrapes, model_name="zzz").throughput.requests_per_s is None


def test_composite_ttft_is_flagged_as_an_approximation() -> None:
    def stage_series(queue: float, prefill: float) -> RawSeries:
        edges = (0.1, INF)
        return RawSeries(
            histograms={
                "queue_s": CumulativeHistogram(
                    buckets=list(zip(edges, [queue, queue], strict=True)), sum=queue * 0.05, count=queue
                ),
                "prefill_s": CumulativeHistogram(
                    buckets=list(zip(edges, [prefill, prefill], strict=True)), sum=prefill * 0.02, count=prefill
                ),
            }
        )

    scrapes = [
        RawScrape(collected_at=T0, total=stage_series(0, 0)),
        RawScrape(collected_at=T0 + timedelta(seconds=5), total=stage_series(10, 4)),
    ]
    figures = aggregate_window(scrapes)
    # both stages: rank at q*count inside (0, 0.1] from 0: q * 0.1 each
    assert figures.latency.ttft_s.p50 == pytest.approx(0.05 + 0.05)
    assert figures.latency.ttft_s.mean == pytest.approx(0.05 + 0.02)
    assert [a.field for a in figures.approximations] == ["latency.ttft_s"]
