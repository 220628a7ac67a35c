"""What the judge reads: one cohort's bucket-count increases and request counters over one window.

The judge never looks at interpolated quantiles: it counts requests above bucket edges, which is
exactly what a histogram knows. Counts arrive as the engine exposes them (floats, cumulative per
`le` edge); anything inconsistent (a bucket above the total, a decreasing cumulative count, NaN)
is what a counter reset inside the window looks like, and such a histogram is treated as no data
rather than guessed at.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = (
    "LATENCY_METRICS",
    "PER_TOKEN_METRICS",
    "BucketCounts",
    "CohortCounts",
    "HistogramLike",
    "SeriesLike",
    "bucket_counts",
    "cohort_counts",
    "merge_cohorts",
    "request_scaled",
    "summed_counts",
)

#: Latency histograms the judge knows (concept keys of `engines/base.py`).
LATENCY_METRICS = ("ttft_s", "itl_s", "e2e_s", "queue_s")
#: Histograms that observe once per generated token, not once per request.
PER_TOKEN_METRICS = frozenset({"itl_s"})


class HistogramLike(Protocol):
    """What the judge reads of the agent's `metrics.snapshot.CumulativeHistogram`.

    Protocols instead of imports keep the judge a leaf package: `metrics` converts its windows
    into judge counts, so the judge must not depend on `metrics` (import-linter's acyclic check).
    """

    @property
    def buckets(self) -> Sequence[tuple[float, float]]: ...


class SeriesLike(Protocol):
    """What the judge reads of the agent's `metrics.snapshot.RawSeries` (one instance's increase)."""

    @property
    def histograms(self) -> Mapping[str, HistogramLike]: ...

    @property
    def counters(self) -> Mapping[str, float]: ...


class BucketCounts(msgspec.Struct, kw_only=True):
    """One cohort's summed bucket increases over one window.

    `edges` are the finite `le` edges in ascending order, `counts_le[i]` the observations at or
    below `edges[i]`, and `total` the `+Inf` bucket (every observation).
    """

    edges: list[float] = msgspec.field(default_factory=list)
    counts_le: list[float] = msgspec.field(default_factory=list)
    total: float = 0.0

    def is_valid(self) -> bool:
        """False for anything a reset or a partial scrape produces: such a window carries no data."""
        if len(self.edges) != len(self.counts_le) or not _finite_nonnegative(self.total):
            return False
        previous_edge, previous_count = -math.inf, 0.0
        for edge, count in zip(self.edges, self.counts_le, strict=True):
            if not math.isfinite(edge) or edge <= previous_edge or not _finite_nonnegative(count):
                return False
            if count < previous_count or count > self.total:
                return False
            previous_edge, previous_count = edge, count
        return True

    def above(self, edge: float) -> float:
        """Observations above `edge` (which must be one of `edges`)."""
        return self.total - self.counts_le[self.edges.index(edge)]


class CohortCounts(msgspec.Struct, kw_only=True):
    """What one cohort (or the pre-rollout baseline) counted in one window.

    `requests` are finished requests (failed ones included), `errors` the failed ones,
    `preemptions` the engine's preemption counter. `histograms` maps concept keys (`ttft_s`,
    `e2e_s`, `queue_s`, `itl_s`) to bucket counts; `itl_s` counts tokens, see `request_scaled`.
    `exposure_s` is the instance-seconds the counts cover (each instance's window summed), None
    when unknown: instances' windows need not be equally long (a window may end on a stored
    reading), and requests per instance only compare at equal exposure.
    """

    instances: int = 0
    exposure_s: float | None = None
    requests: float = 0.0
    errors: float | None = None
    preemptions: float | None = None
    histograms: dict[str, BucketCounts] = msgspec.field(default_factory=dict)

    def histogram(self, metric: str) -> BucketCounts | None:
        """The metric's counts in units of requests, or None when missing or inconsistent."""
        counts = self.histograms.get(metric)
        if counts is None or not counts.is_valid():
            return None
        if metric in PER_TOKEN_METRICS:
            return request_scaled(counts, self.requests)
        return counts


def _finite_nonnegative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def request_scaled(counts: BucketCounts, requests: float) -> BucketCounts | None:
    """Per-token counts rescaled so that their total equals the requests served.

    Inter-token latencies are observed once per token, and the tokens of one decode step (and of
    one request) share their latency: 100 slow tokens are often one slow request. Counting them
    as 100 independent draws would overstate the evidence by the tokens per request. Scaling
    every bucket by requests/tokens keeps the shares (which is what is compared) and sizes the
    evidence as if each request were one observation at its token-weighted share. Unknown or
    zero requests give None: the per-request size of the sample is then unknown.
    """
    if counts.total <= 0 or not _finite_nonnegative(requests) or requests <= 0:
        return None
    scale = requests / counts.total
    return BucketCounts(
        edges=list(counts.edges),
        counts_le=[count * scale for count in counts.counts_le],
        total=requests,
    )


def bucket_counts(histogram: HistogramLike) -> BucketCounts | None:
    """Judge counts from the agent's cumulative (or delta) histogram; None without a `+Inf` bucket."""
    ordered = sorted(histogram.buckets, key=lambda bucket: bucket[0])
    if not ordered or ordered[-1][0] != math.inf:
        return None
    finite = [(edge, count) for edge, count in ordered if math.isfinite(edge)]
    return BucketCounts(
        edges=[edge for edge, _ in finite],
        counts_le=[count for _, count in finite],
        total=ordered[-1][1],
    )


def summed_counts(parts: Iterable[BucketCounts]) -> BucketCounts | None:
    """The sum of valid bucket counts at the edges they all have (as `metrics.histogram.merge_histograms`
    sums the agent's histograms: counts at a common edge are exact, other edges are dropped).
    Invalid parts (resets) are left out; None when nothing is left."""
    valid = [part for part in parts if part.is_valid()]
    if not valid:
        return None
    common = set(valid[0].edges).intersection(*(part.edges for part in valid[1:]))
    positions = [dict(zip(part.edges, part.counts_le, strict=True)) for part in valid]
    edges = sorted(common)
    return BucketCounts(
        edges=edges,
        counts_le=[math.fsum(position[edge] for position in positions) for edge in edges],
        total=math.fsum(part.total for part in valid),
    )


def cohort_counts(increases: Iterable[SeriesLike], *, seconds: Iterable[float | None] = ()) -> CohortCounts:
    """A cohort's counts from each instance's increase over the window (`metrics.builder` increases).

    Histograms are summed with `summed_counts` (only edges every instance has), counters are
    added; a counter no instance has stays unknown. `seconds`: each instance's window length, in
    the same order; the exposure is known only when every instance's is.
    """
    series = list(increases)
    spans = list(seconds)
    histograms: dict[str, BucketCounts] = {}
    for metric in LATENCY_METRICS:
        parts = [bucket_counts(item.histograms[metric]) for item in series if metric in item.histograms]
        summed = summed_counts(part for part in parts if part is not None)
        if summed is not None:
            histograms[metric] = summed
    known = len(spans) == len(series) and all(span is not None and span > 0 for span in spans)
    return CohortCounts(
        instances=len(series),
        exposure_s=math.fsum(span for span in spans if span is not None) if known and series else None,
        requests=_summed(series, "requests_finished") or 0.0,
        errors=_summed(series, "requests_failed"),
        preemptions=_summed(series, "preemptions"),
        histograms=histograms,
    )


def _summed(series: list[SeriesLike], key: str) -> float | None:
    values = [item.counters[key] for item in series if key in item.counters]
    return math.fsum(values) if values else None


def merge_cohorts(cohorts: Iterable[CohortCounts]) -> CohortCounts:
    """The sum of several cohorts' counts (e.g. the baseline from the first canary cohort and the rest).

    Histograms are summed with `summed_counts`; a counter unknown in every cohort stays unknown.
    """
    items = list(cohorts)
    histograms: dict[str, BucketCounts] = {}
    for metric in LATENCY_METRICS:
        summed = summed_counts(item.histograms[metric] for item in items if metric in item.histograms)
        if summed is not None:
            histograms[metric] = summed
    errors = [item.errors for item in items if item.errors is not None]
    preemptions = [item.preemptions for item in items if item.preemptions is not None]
    exposures = [item.exposure_s for item in items]
    return CohortCounts(
        instances=sum(item.instances for item in items),
        exposure_s=None if not items or None in exposures else math.fsum(e for e in exposures if e is not None),
        requests=math.fsum(item.requests for item in items),
        errors=math.fsum(errors) if errors else None,
        preemptions=math.fsum(preemptions) if preemptions else None,
        histograms=histograms,
    )
