"""Histogram and counter math against values computed by hand with PromQL's rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from performance_agent.metrics.histogram import (
    counter_delta,
    finite_or_none,
    histogram_delta,
    histogram_mean,
    histogram_quantile,
    merge_histograms,
)
from performance_agent.metrics.snapshot import CumulativeHistogram

INF = math.inf
# 10 observations <= 0.1, 20 in (0.1, 0.5], 10 in (0.5, 1], 10 above 1.
BUCKETS = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (INF, 50.0)]


def hist(buckets: list[tuple[float, float]], total: float) -> CumulativeHistogram:
    return CumulativeHistogram(buckets=buckets, sum=total, count=buckets[-1][1])


class TestHistogramQuantile:
    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            # rank 25 falls in (0.1, 0.5] holding 20; 15 of them below the rank: 0.1 + 0.4 * 15/20
            (0.5, 0.4),
            # rank 5 in the lowest bucket, interpolated from 0: 0.1 * 5/10
            (0.1, 0.05),
            # rank 30 is exactly the cumulative count of le=0.5: the bucket's upper edge
            (0.6, 0.5),
            # rank 37.5 in (0.5, 1] holding 10, 7.5 of them: 0.5 + 0.5 * 7.5/10
            (0.75, 0.875),
            # rank 45 is beyond le=1 (40): PromQL answers the highest finite edge
            (0.9, 1.0),
            (0.99, 1.0),
            (1.0, 1.0),
            # rank 0: the first bucket whose count >= 0 is le=0.1, at its lower end
            (0.0, 0.0),
        ],
    )
    def test_matches_promql_by_hand(self, q: float, expected: float) -> None:
        assert histogram_quantile(q, BUCKETS) == pytest.approx(expected, rel=1e-12)

    def test_out_of_range_q_is_infinite_like_promql_and_none_after_finite_or_none(self) -> None:
        assert histogram_quantile(-0.1, BUCKETS) == -INF
        assert histogram_quantile(1.1, BUCKETS) == INF
        assert finite_or_none(histogram_quantile(-0.1, BUCKETS)) is None
        assert finite_or_none(histogram_quantile(1.1, BUCKETS)) is None
        assert histogram_quantile(math.nan, BUCKETS) is None

    def test_no_answer_where_promql_returns_nan(self) -> None:
        assert histogram_quantile(0.5, []) is None
        assert histogram_quantile(0.5, [(0.1, 1.0), (1.0, 2.0)]) is None  # no +Inf bucket
        assert histogram_quantile(0.5, [(INF, 5.0)]) is None  # fewer than two buckets
        assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None  # no observations

    def test_lowest_bucket_with_non_positive_edge_returns_that_edge(self) -> None:
        assert histogram_quantile(0.2, [(0.0, 5.0), (1.0, 10.0), (INF, 10.0)]) == 0.0
        assert histogram_quantile(0.2, [(-1.0, 5.0), (1.0, 10.0), (INF, 10.0)]) == -1.0

    def test_unsorted_and_duplicate_edges_are_sorted_and_coalesced(self) -> None:
        shuffled = [(INF, 50.0), (1.0, 40.0), (0.1, 10.0), (0.5, 30.0)]
        assert histogram_quantile(0.5, shuffled) == pytest.approx(0.4)
        # Two series with le=1 (e.g. "1" and "1.0") are one bucket with their counts added.
        assert histogram_quantile(0.5, [(1.0, 2.0), (1.0, 2.0), (2.0, 8.0), (INF, 8.0)]) == pytest.approx(1.0)
        # rank 6 in (1, 2] holding 4, 2 of them: 1 + 1 * 2/4
        assert histogram_quantile(0.75, [(1.0, 2.0), (1.0, 2.0), (2.0, 8.0), (INF, 8.0)]) == pytest.approx(1.5)

    def test_decreasing_bucket_is_flattened_like_ensure_monotonic(self) -> None:
        broken = [(0.1, 10.0), (0.5, 8.0), (1.0, 20.0), (INF, 20.0)]
        # le=0.5 is raised to 10; rank 15 lies in (0.5, 1] holding 10, 5 of them: 0.5 + 0.5 * 5/10
        assert histogram_quantile(0.75, broken) == pytest.approx(0.75)
        assert histogram_quantile(0.5, broken) == pytest.approx(0.1)

    def test_float_noise_between_equal_counts_is_ignored(self) -> None:
        noisy = [(1.0, 10.0), (2.0, 10.0 + 1e-14), (INF, 10.0 + 1e-14)]
        # Without the correction the rank would land in the float-noise bucket (1, 2] and answer 2.0.
        assert histogram_quantile(1.0, noisy) == pytest.approx(1.0)

    @given(
        increments=st.lists(st.integers(min_value=0, max_value=1000), min_size=2, max_size=12),
        q_low=st.floats(min_value=0.0, max_value=1.0),
        q_high=st.floats(min_value=0.0, max_value=1.0),
    )
    def test_quantiles_are_ordered_and_inside_the_edges(
        self, increments: list[int], q_low: float, q_high: float
    ) -> None:
        edges = [0.01 * 2**position for position in range(len(increments) - 1)] + [INF]
        counts = [float(sum(increments[: position + 1])) for position in range(len(increments))]
        buckets = list(zip(edges, counts, strict=True))
        low, high = sorted((q_low, q_high))
        lower = histogram_quantile(low, buckets)
        upper = histogram_quantile(high, buckets)
        if counts[-1] == 0:
            assert lower is None
            assert upper is None
            return
        if low == 0.0 and counts[0] == 0:
            assert lower is None  # PromQL: 0/0 in an empty first bucket is NaN
            lower = 0.0
        if high == 0.0 and counts[0] == 0:
            assert upper is None
            return
        assert lower is not None
        assert upper is not None
        assert 0.0 <= lower <= upper <= edges[-2]

    def test_zero_quantile_of_an_empty_first_bucket_is_unknown_like_promql_nan(self) -> None:
        assert histogram_quantile(0.0, [(0.1, 0.0), (0.2, 3.0), (INF, 3.0)]) is None
        assert histogram_quantile(0.0, [(0.1, 2.0), (0.2, 3.0), (INF, 3.0)]) == 0.0


class TestMeanAndCounters:
    def test_mean_is_sum_over_count(self) -> None:
        assert histogram_mean(hist(BUCKETS, 20.0)) == pytest.approx(0.4)

    def test_mean_without_observations_is_unknown(self) -> None:
        assert histogram_mean(hist([(1.0, 0.0), (INF, 0.0)], 0.0)) is None

    def test_counter_delta_and_reset(self) -> None:
        assert counter_delta(10.0, 15.0) == 5.0
        assert counter_delta(10.0, 10.0) == 0.0
        assert counter_delta(10.0, 3.0) == 3.0  # restarted: all of the current value is new

    def test_finite_or_none(self) -> None:
        assert finite_or_none(1.5) == 1.5
        assert finite_or_none(None) is None
        assert finite_or_none(math.nan) is None


class TestHistogramDelta:
    def test_delta_of_growing_histogram(self) -> None:
        before = hist([(0.1, 10.0), (1.0, 30.0), (INF, 40.0)], 12.0)
        after = hist([(0.1, 15.0), (1.0, 45.0), (INF, 60.0)], 20.5)
        delta = histogram_delta(before, after)
        assert delta.buckets == [(0.1, 5.0), (1.0, 15.0), (INF, 20.0)]
        assert delta.count == 20.0
        assert delta.sum == pytest.approx(8.5)

    def test_lower_count_is_a_restart(self) -> None:
        before = hist([(0.1, 10.0), (INF, 40.0)], 12.0)
        after = hist([(0.1, 3.0), (INF, 5.0)], 1.0)
        assert histogram_delta(before, after) is after

    def test_lower_bucket_with_higher_count_is_a_restart(self) -> None:
        before = hist([(0.1, 10.0), (INF, 10.0)], 0.5)
        after = hist([(0.1, 2.0), (INF, 30.0)], 40.0)
        assert histogram_delta(before, after) is after

    def test_changed_edges_mean_a_new_histogram(self) -> None:
        before = hist([(0.1, 1.0), (INF, 2.0)], 0.5)
        after = hist([(0.2, 5.0), (INF, 9.0)], 3.0)
        assert histogram_delta(before, after) is after


class TestMerge:
    def test_same_edges_add_bucketwise(self) -> None:
        merged = merge_histograms(
            [hist([(0.1, 1.0), (1.0, 3.0), (INF, 4.0)], 2.0), hist([(0.1, 2.0), (1.0, 2.0), (INF, 6.0)], 9.0)]
        )
        assert merged is not None
        assert merged.buckets == [(0.1, 3.0), (1.0, 5.0), (INF, 10.0)]
        assert merged.sum == 11.0
        assert merged.count == 10.0

    def test_differing_edges_keep_only_the_common_ones(self) -> None:
        fine = hist([(0.1, 1.0), (0.5, 4.0), (1.0, 6.0), (INF, 8.0)], 5.0)
        coarse = hist([(0.2, 1.0), (1.0, 3.0), (INF, 4.0)], 4.0)
        merged = merge_histograms([fine, coarse])
        assert merged is not None
        assert merged.buckets == [(1.0, 9.0), (INF, 12.0)]
        assert merged.count == 12.0
        # rank 6 in the lowest common bucket (0, 1] holding 9: 6/9
        assert histogram_quantile(0.5, merged.buckets) == pytest.approx(6 / 9)

    def test_nothing_to_merge(self) -> None:
        assert merge_histograms([]) is None
