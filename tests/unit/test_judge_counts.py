"""What the judge reads: bucket counts, their validity, per-token rescaling and the conversions."""

from __future__ import annotations

import math

import pytest

from performance_agent.judge.counts import (
    BucketCounts,
    CohortCounts,
    bucket_counts,
    cohort_counts,
    merge_cohorts,
    request_scaled,
)
from performance_agent.metrics.snapshot import CumulativeHistogram, RawSeries


def counts(le: list[float], total: float, edges: list[float] | None = None) -> BucketCounts:
    return BucketCounts(edges=edges or [0.1, 0.5, 1.0][: len(le)], counts_le=le, total=total)


def test_valid_counts_and_the_share_above_an_edge() -> None:
    valid = counts([10, 80, 95], 100)
    assert valid.is_valid()
    assert valid.above(0.5) == 20
    assert counts([], 0.0, edges=[]).is_valid()


@pytest.mark.parametrize(
    "broken",
    [
        counts([10, 80, 120], 100),  # a bucket above the total: the +Inf series reset first
        counts([10, 5, 95], 100),  # decreasing cumulative counts: one bucket series reset
        counts([10, 80, 95], math.nan),
        counts([10, math.inf, 95], 100),
        counts([-1, 80, 95], 100),
        counts([10, 80, 95], 100, edges=[0.1, 0.1, 1.0]),
        counts([10, 80, 95], 100, edges=[0.1, math.inf, 2.0]),
        BucketCounts(edges=[0.1], counts_le=[1, 2], total=3),
    ],
)
def test_what_a_reset_looks_like_is_no_data(broken: BucketCounts) -> None:
    assert not broken.is_valid()
    assert CohortCounts(requests=100, histograms={"ttft_s": broken}).histogram("ttft_s") is None


def test_per_token_counts_are_rescaled_to_requests() -> None:
    tokens = counts([600, 900, 990], 1000)
    cohort = CohortCounts(requests=50, histograms={"itl_s": tokens, "ttft_s": tokens})
    scaled = cohort.histogram("itl_s")
    assert scaled is not None
    assert scaled.total == 50
    assert scaled.counts_le == pytest.approx([30, 45, 49.5])
    assert cohort.histogram("ttft_s") is tokens
    assert request_scaled(tokens, 0) is None
    assert request_scaled(counts([0, 0, 0], 0), 10) is None
    assert CohortCounts(requests=10).histogram("e2e_s") is None


def test_bucket_counts_from_the_agents_histograms() -> None:
    histogram = CumulativeHistogram(buckets=[(0.5, 8.0), (0.1, 3.0), (math.inf, 10.0)], sum=2.0, count=10.0)
    assert bucket_counts(histogram) == BucketCounts(edges=[0.1, 0.5], counts_le=[3.0, 8.0], total=10.0)
    assert bucket_counts(CumulativeHistogram(buckets=[(0.5, 8.0)], sum=0.0, count=8.0)) is None
    assert bucket_counts(CumulativeHistogram(buckets=[], sum=0.0, count=0.0)) is None


def test_cohort_counts_sum_the_instances_increases() -> None:
    def series(le: float, total: float, finished: float, failed: float | None) -> RawSeries:
        counters = {"requests_finished": finished, "preemptions": 1.0}
        if failed is not None:
            counters["requests_failed"] = failed
        return RawSeries(
            histograms={"ttft_s": CumulativeHistogram(buckets=[(0.5, le), (math.inf, total)], sum=1.0, count=total)},
            counters=counters,
        )

    cohort = cohort_counts([series(5, 10, 10, 1), series(2, 4, 4, None)])
    assert cohort.instances == 2
    assert cohort.requests == 14
    assert cohort.errors == 1
    assert cohort.preemptions == 2
    assert cohort.histograms == {"ttft_s": BucketCounts(edges=[0.5], counts_le=[7.0], total=14.0)}
    empty = cohort_counts([RawSeries()])
    assert (empty.instances, empty.requests, empty.errors, empty.histograms) == (1, 0.0, None, {})


def test_merged_cohorts_keep_common_edges_and_drop_resets() -> None:
    first = CohortCounts(
        instances=1, requests=10, errors=None, preemptions=2, histograms={"ttft_s": counts([1, 5, 9], 10)}
    )
    second = CohortCounts(
        instances=3,
        requests=30,
        errors=3,
        preemptions=None,
        histograms={"ttft_s": counts([2, 9], 30, edges=[0.1, 1.0]), "e2e_s": counts([5, 1], 30)},
    )
    merged = merge_cohorts([first, second])
    assert (merged.instances, merged.requests, merged.errors, merged.preemptions) == (4, 40, 3, 2)
    assert merged.histograms == {"ttft_s": BucketCounts(edges=[0.1, 1.0], counts_le=[3.0, 18.0], total=40.0)}
    assert merge_cohorts([]) == CohortCounts()
