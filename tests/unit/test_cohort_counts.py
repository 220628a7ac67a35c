"""A cohort's raw scrapes summed into the judge's counts: bucket increases and counters, restarts included."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from performance_agent.metrics.builder import RawScrape, cohort_counts, cohort_figures
from performance_agent.metrics.snapshot import CumulativeHistogram, RawSeries

INF = math.inf
T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
EDGES = (0.5, 1.0, 2.5, INF)


def series(
    ttft: list[float], counters: dict[str, float], *, start: float = 1.0e9, itl: list[float] | None = None
) -> RawSeries:
    histograms = {"ttft_s": CumulativeHistogram(buckets=list(zip(EDGES, ttft, strict=True)), sum=1.0, count=ttft[-1])}
    if itl is not None:
        histograms["itl_s"] = CumulativeHistogram(buckets=list(zip(EDGES, itl, strict=True)), sum=1.0, count=itl[-1])
    return RawSeries(histograms=histograms, counters=counters, process_start_time_s=start)


def scrape(seconds: float, total: RawSeries, models: dict[str, RawSeries] | None = None) -> RawScrape:
    return RawScrape(collected_at=T0 + timedelta(seconds=seconds), total=total, models=models or {})


def counters(finished: float, failed: float, preemptions: float) -> dict[str, float]:
    return {"requests_finished": finished, "requests_failed": failed, "preemptions": preemptions}


def test_two_instances_sum_their_bucket_increases_and_counters_across_a_restart() -> None:
    first = [
        scrape(0, series([10, 10, 10, 10], counters(10, 0, 1))),
        scrape(15, series([30, 40, 45, 50], counters(50, 2, 3))),  # +20 +30 +35 +40
        scrape(30, series([5, 8, 9, 10], counters(10, 1, 0), start=1.1e9)),  # restarted: all of it is new
    ]
    second = [
        scrape(0, series([0, 0, 0, 0], counters(0, 0, 0))),
        scrape(30, series([1, 2, 3, 4], counters(4, 0, 2))),
    ]
    lonely = [scrape(30, series([100, 100, 100, 100], counters(100, 100, 100)))]  # one scrape: no window

    counted = cohort_counts([first, second, lonely])
    assert counted.instances == 2
    assert counted.requests == 40 + 10 + 4
    assert counted.errors == 2 + 1 + 0
    assert counted.preemptions == 2 + 0 + 2
    ttft = counted.histograms["ttft_s"]
    assert ttft.edges == [0.5, 1.0, 2.5]
    assert ttft.counts_le == [20 + 5 + 1, 30 + 8 + 2, 35 + 9 + 3]
    assert ttft.total == 40 + 10 + 4
    assert ttft.above(1.0) == pytest.approx(54 - 40)
    # The same increases cohort_figures reads.
    assert cohort_figures([first, second, lonely]).latency.ttft_s.count == ttft.total


def test_exposure_sums_each_instances_own_window() -> None:
    early = [scrape(0, series([0, 0, 0, 0], counters(0, 0, 0))), scrape(4, series([1, 1, 1, 1], counters(4, 0, 0)))]
    full = [scrape(0, series([0, 0, 0, 0], counters(0, 0, 0))), scrape(15, series([2, 2, 2, 2], counters(15, 0, 0)))]
    assert cohort_counts([early, full]).exposure_s == pytest.approx(4 + 15)
    # A lone scrape adds no window, so neither an instance nor exposure.
    lone = [scrape(15, series([2, 2, 2, 2], counters(15, 0, 0)))]
    assert cohort_counts([early, lone]).exposure_s == pytest.approx(4)


def test_missing_counters_stay_unknown_and_models_are_selected() -> None:
    model = series([1, 2, 3, 3], {"requests_finished": 3})
    later = series([2, 4, 6, 6], {"requests_finished": 6}, itl=[10, 20, 30, 40])
    scrapes = [
        scrape(0, series([0, 0, 0, 0], {}), {"m": model}),
        scrape(15, series([0, 0, 0, 0], {}), {"m": later}),
    ]
    counted = cohort_counts([scrapes], model_name="m")
    assert counted.instances == 1
    assert counted.requests == 3
    assert counted.errors is None
    assert counted.preemptions is None
    assert counted.histograms["ttft_s"].counts_le == [1, 2, 3]
    assert counted.histograms["itl_s"].total == 40  # first seen in the window: counted since the start
    assert cohort_counts([]).instances == 0
