"""Histogram and counter arithmetic with the semantics of PromQL's `histogram_quantile` and `rate()`.

Everything the agent reports as a percentile or a rate goes through here, so that a figure the
agent prints is the figure a Prometheus user would get from the same samples. Pure: no I/O.

Bucket lists are cumulative `(upper_bound, count)` pairs read from the page (edges are never
assumed); a valid list ends with the `+Inf` bucket.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from performance_agent.readings.series import CumulativeHistogram, bucket_edges, merge_histograms

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = (
    "Bucket",
    "counter_delta",
    "finite_or_none",
    "histogram_delta",
    "histogram_mean",
    "histogram_quantile",
    "histogram_quantiles",
    "merge_histograms",  # defined in readings/series.py, beside the type it sums
)

Bucket = tuple[float, float]

# Prometheus `smallDeltaTolerance`: bucket counts that differ by less than this relative amount
# are float noise (from rate() arithmetic), not a real decrease.
_SMALL_DELTA_TOLERANCE = 1e-12
_MIN_NORMAL = 2.2250738585072014e-308


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    """Prometheus `util/almost.Equal`, so tiny float differences are corrected exactly as PromQL does."""
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    return diff / min(abs_sum, 1.7976931348623157e308) < epsilon


def _coalesce_and_make_monotonic(buckets: Sequence[Bucket]) -> list[list[float]]:
    """Sorted copy with equal edges merged and decreases removed (PromQL `coalesceBuckets` + `ensureMonotonic`).

    Non-monotonic cumulative counts happen when series of one histogram are scraped at slightly
    different moments or summed from ranks with float noise; PromQL flattens them rather than
    returning nonsense, and so do we.
    """
    ordered = sorted(buckets, key=lambda bucket: bucket[0])
    merged: list[list[float]] = []
    for upper_bound, count in ordered:
        if merged and merged[-1][0] == upper_bound:
            merged[-1][1] += count
        else:
            merged.append([upper_bound, count])
    previous = merged[0][1]
    for bucket in merged[1:]:
        current = bucket[1]
        if current == previous:
            continue
        if _almost_equal(previous, current, _SMALL_DELTA_TOLERANCE) or current < previous:
            bucket[1] = previous
            continue
        previous = current
    return merged


def histogram_quantile(q: float, buckets: Sequence[Bucket]) -> float | None:
    """The q-quantile exactly as PromQL's `histogram_quantile(q, ...)` computes it.

    Where PromQL returns NaN (no `+Inf` bucket, fewer than two buckets, no observations, q is NaN)
    this returns None; q < 0 and q > 1 give -inf/+inf like PromQL, which `finite_or_none` turns
    into None before anything reaches the API.
    """
    return histogram_quantiles((q,), buckets)[0]


def histogram_quantiles(qs: Sequence[float], buckets: Sequence[Bucket]) -> list[float | None]:
    """`histogram_quantile` for each of `qs` over the same buckets, which are coalesced once.

    Every snapshot, window and cohort reports four quantiles of each histogram; coalescing the
    buckets four times was a tenth of the reconciler's CPU with 1,000 workflows.
    """
    fixed = _coalesce_and_make_monotonic(buckets) if buckets else None
    return [_quantile_of(q, fixed) for q in qs]


def _quantile_of(q: float, fixed: list[list[float]] | None) -> float | None:
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if fixed is None:
        return None
    if fixed[-1][0] != math.inf or len(fixed) < 2:
        return None
    observations = fixed[-1][1]
    if observations <= 0:
        return None
    rank = q * observations
    last_finite = len(fixed) - 1
    index = last_finite
    for position in range(last_finite):  # sort.Search over all buckets but +Inf
        if fixed[position][1] >= rank:
            index = position
            break
    if index == last_finite:
        # The rank lies in the +Inf bucket: Prometheus answers with the highest finite edge.
        return fixed[last_finite - 1][0]
    if index == 0 and fixed[0][0] <= 0:
        return fixed[0][0]
    bucket_start = 0.0
    bucket_end, count = fixed[index]
    if index > 0:
        bucket_start = fixed[index - 1][0]
        count -= fixed[index - 1][1]
        rank -= fixed[index - 1][1]
    if count == 0:
        # Only reachable with rank 0 (q = 0) on an empty first bucket: PromQL divides 0 by 0 (NaN).
        return None
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


def finite_or_none(value: float | None) -> float | None:
    """The API never carries NaN or infinities: what cannot be a number is unknown."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


def histogram_mean(histogram: CumulativeHistogram) -> float | None:
    """`rate(x_sum) / rate(x_count)`: unknown (not 0) when nothing was observed."""
    if histogram.count <= 0:
        return None
    return finite_or_none(histogram.sum / histogram.count)


def counter_delta(previous: float, current: float) -> float:
    """Increase of a counter between two scrapes; a decrease means the process restarted.

    Like `rate()`, a reset is taken to restart from zero, so everything counted since the restart
    (the current value) is the increase.
    """
    if current < previous:
        return current
    return current - previous


def histogram_delta(previous: CumulativeHistogram, current: CumulativeHistogram) -> CumulativeHistogram:
    """Observations made between two scrapes of one histogram.

    The histogram is treated as one unit: if its count or any bucket went down, or its edges
    changed (only a restarted server can re-bucket), the server restarted and the current
    histogram is entirely new observations. Per-bucket reset handling would mix pre- and
    post-restart buckets into a distribution that never existed.
    """
    if current.count < previous.count or bucket_edges(previous) != bucket_edges(current):
        return current
    buckets: list[tuple[float, float]] = []
    for (upper_bound, before), (_, after) in zip(previous.buckets, current.buckets, strict=True):
        if after < before:
            return current
        buckets.append((upper_bound, after - before))
    return CumulativeHistogram(
        buckets=buckets,
        sum=current.sum - previous.sum,
        count=current.count - previous.count,
    )
