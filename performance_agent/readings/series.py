"""The cumulative series an engine adapter reads off a page, and their `sum by (le)` merge.

Engine-neutral: concept names (`ttft_s`, `requests_finished`...) rather than any engine's wire
names. The rest of the histogram and counter arithmetic (quantiles, deltas) is in
`metrics/histogram.py`; the merge is here because the adapters sum data-parallel ranks with it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = (
    "Approximation",
    "ConfigValue",
    "CumulativeHistogram",
    "RawSeries",
    "bucket_edges",
    "merge_histograms",
)

ConfigValue = str | int | float | bool | None


class Approximation(msgspec.Struct, kw_only=True):
    """A field that the engine does not expose directly, and the formula used instead."""

    field: str
    formula: str


class CumulativeHistogram(msgspec.Struct, kw_only=True):
    """Cumulative buckets as read from the page: `buckets` is [[le, cumulative_count], ...] ending at +inf.

    Bucket edges always come from the page, never from a table in the code.
    """

    buckets: list[tuple[float, float]]
    sum: float
    count: float


class RawSeries(msgspec.Struct, kw_only=True):
    """The cumulative inputs a snapshot was computed from, in engine-neutral concept names.

    Stored with each snapshot so that any longer window or any group of instances is computed
    as PromQL would: quantiles over summed bucket deltas, rates over summed counter deltas.
    Concept keys are documented in `docs/metrics.md` (e.g. histograms `ttft_s`, `itl_s`, `e2e_s`,
    `queue_s`; counters `requests_finished`, `requests_failed`, `prompt_tokens`,
    `generation_tokens`, `preemptions`, `prefix_cache_queries`, `prefix_cache_hits`; gauges
    `requests_running`, `requests_waiting`, `kv_cache_usage`).
    """

    histograms: dict[str, CumulativeHistogram] = msgspec.field(default_factory=dict)
    counters: dict[str, float] = msgspec.field(default_factory=dict)
    gauges: dict[str, float] = msgspec.field(default_factory=dict)
    process_start_time_s: float | None = None


def bucket_edges(histogram: CumulativeHistogram) -> list[float]:
    return [bucket[0] for bucket in histogram.buckets]


def merge_histograms(histograms: Iterable[CumulativeHistogram]) -> CumulativeHistogram | None:
    """Sum histograms (PromQL `sum by (le)`), for data-parallel ranks, models or a cohort of instances.

    With identical edges the counts are added bucket by bucket. With differing edges, the merged
    histogram keeps only the edges that every input has (`+Inf` always qualifies): at those edges
    each input's cumulative count is known exactly, so every merged count is exact, and quantiles
    interpolate over the coarser common buckets. Summing over the union of edges, as a raw PromQL
    `sum by (le)` would, mixes counts measured at different edges and yields non-monotonic
    buckets that PromQL then papers over. None when there is nothing to merge.
    """
    items = list(histograms)
    if not items:
        return None
    first_edges = bucket_edges(items[0])
    if all(bucket_edges(item) == first_edges for item in items[1:]):
        counts = [0.0] * len(first_edges)
        for item in items:
            for position, bucket in enumerate(item.buckets):
                counts[position] += bucket[1]
        return CumulativeHistogram(
            buckets=list(zip(first_edges, counts, strict=True)),
            sum=math.fsum(item.sum for item in items),
            count=math.fsum(item.count for item in items),
        )
    common = set(first_edges)
    for item in items[1:]:
        common.intersection_update(bucket_edges(item))
    kept = sorted(common)
    totals = dict.fromkeys(kept, 0.0)
    for item in items:
        for upper_bound, count in item.buckets:
            if upper_bound in totals:
                totals[upper_bound] += count
    return CumulativeHistogram(
        buckets=[(edge, totals[edge]) for edge in kept],
        sum=math.fsum(item.sum for item in items),
        count=math.fsum(item.count for item in items),
    )
