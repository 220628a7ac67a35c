"""From adapted pages to the figures the rest of the agent reads: snapshots, windows and cohorts.

Every figure is computed as PromQL would from the cumulative series: quantiles with
`histogram_quantile` over (summed) bucket increases, rates as counter increases over seconds,
ratios as ratios of summed increases. Percentiles are never averaged. Nothing here knows an
engine: adapters already translated names into concept keys (`engines/base.py`).

Windows:
- with a previous scrape of the instance, figures cover the seconds between the two scrapes;
- without one they cover the server's lifetime: quantiles over the cumulative histograms, rates
  over the seconds since the counting start (`RawSeries.process_start_time_s`: earliest `_created`,
  else `process_start_time_seconds`); no start on the page means rates are unknown (None).
A restart between two scrapes is recognised by a counter going down (as `rate()` does) and also by
a later counting start, in which case everything counted since the restart is the increase.

Gauges (running, waiting, KV usage) are the values at the end of the window.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime  # msgspec resolves field types at runtime
from typing import TYPE_CHECKING

import msgspec

from performance_agent.engines.base import combine_gauge
from performance_agent.judge import counts as judge_counts
from performance_agent.metrics.goodput import Goodput, goodput
from performance_agent.metrics.histogram import (
    counter_delta,
    finite_or_none,
    histogram_delta,
    histogram_mean,
    histogram_quantiles,
    merge_histograms,
)
from performance_agent.metrics.snapshot import (
    Approximation,
    CumulativeHistogram,
    Errors,
    InstanceSnapshot,
    InvalidFigure,
    Latency,
    Load,
    Quantiles,
    RawSeries,
    Throughput,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from performance_agent.engines.base import AdaptedPage
    from performance_agent.metrics.goodput import LatencyTarget

__all__ = (
    "COMPOSITE_TTFT",
    "AggregateFigures",
    "RawScrape",
    "aggregate_steps",
    "aggregate_window",
    "build_snapshot",
    "cohort_counts",
    "cohort_figures",
    "decode_raw_scrape",
    "drop_impossible",
    "encode_raw_scrape",
    "raw_scrape",
    "scrape_step",
)

# A later counting start than this (seconds) between two scrapes means the server restarted.
_RESTART_TOLERANCE_S = 1.0

# Engines without a TTFT histogram (TGI) expose queue and prefill histograms instead; the TTFT
# quantile is then the sum of their quantiles (the approximation TGI's own dashboard uses).
COMPOSITE_TTFT = ("queue_s", "prefill_s")
_COMPOSITE_TTFT_APPROXIMATION = Approximation(
    field="latency.ttft_s",
    formula="histogram_quantile(q, queue_s) + histogram_quantile(q, prefill_s); mean = sum of means",
)
_QUANTILES = (0.5, 0.9, 0.95, 0.99)


class RawScrape(msgspec.Struct, kw_only=True):
    """The cumulative series of one scrape, stored beside its snapshot for later windows and cohorts."""

    collected_at: datetime
    total: RawSeries
    models: dict[str, RawSeries] = msgspec.field(default_factory=dict)


class AggregateFigures(msgspec.Struct, kw_only=True):
    """Figures of one instance over a longer window, or of a group of instances (a cohort).

    Rates and gauge counts are sums over the instances (PromQL `sum(rate(...))`); divide by
    `instances` for a per-instance figure. KV usage is the fullest instance's. `window_s` is the
    longest per-instance window used.
    """

    window_s: float | None = None
    instances: int = 0
    latency: Latency = msgspec.field(default_factory=Latency)
    throughput: Throughput = msgspec.field(default_factory=Throughput)
    load: Load = msgspec.field(default_factory=Load)
    errors: Errors = msgspec.field(default_factory=Errors)
    approximations: list[Approximation] = msgspec.field(default_factory=list)
    goodput: Goodput | None = None
    invalid: list[InvalidFigure] = msgspec.field(default_factory=list)


_RAW_ENCODER = msgspec.msgpack.Encoder()
_RAW_DECODER = msgspec.msgpack.Decoder(RawScrape)


@dataclass(slots=True, frozen=True)
class _Increase:
    """What one instance counted over a window, with its gauges at the window's end."""

    series: RawSeries
    seconds: float | None


def raw_scrape(adapted: AdaptedPage, collected_at: datetime) -> RawScrape:
    """What to store with a snapshot so the next one (and any window or cohort) can be computed."""
    return RawScrape(collected_at=collected_at, total=adapted.total, models=dict(adapted.models))


def encode_raw_scrape(scrape: RawScrape) -> bytes:
    """Bytes for storage. MessagePack, because JSON has no +Inf and every histogram ends with that edge."""
    return _RAW_ENCODER.encode(scrape)


def decode_raw_scrape(data: bytes) -> RawScrape:
    return _RAW_DECODER.decode(data)


def build_snapshot(
    *,
    instance_id: str,
    engine: str,
    endpoint: str,
    collected_at: datetime,
    current: AdaptedPage,
    previous: RawScrape | None,
    goodput_targets: Sequence[LatencyTarget] = (),
) -> InstanceSnapshot:
    """The snapshot of one scrape, over the window since `previous` (or over the lifetime without one).

    A `previous` that is not older than `collected_at` (a clock that stepped back) cannot define a
    window, so the lifetime is used. `models` lists per-model snapshots of the same shape when the
    page names more than one model; with a single model its name is the snapshot's `model_name`.
    `goodput` is measured against `goodput_targets` (none: null).
    """
    window_s: float | None = None
    if previous is not None:
        elapsed = (collected_at - previous.collected_at).total_seconds()
        if elapsed > 0:
            window_s = elapsed
        else:
            previous = None

    def snapshot_of(raw: RawSeries, before: RawSeries | None, model_name: str | None) -> InstanceSnapshot:
        increase = _increase_since(before, raw, collected_at, window_s)
        latency, throughput, load, errors, _, invalid = _figures([increase])
        return InstanceSnapshot(
            instance_id=instance_id,
            engine=engine,
            endpoint=endpoint,
            collected_at=collected_at,
            model_name=model_name,
            window_s=window_s,
            latency=latency,
            throughput=throughput,
            load=load,
            errors=errors,
            engine_config=dict(current.engine_config),
            engine_version=current.engine_version,
            approximations=list(current.approximations),
            goodput=_goodput([increase], goodput_targets),
            invalid=invalid,
        )

    names = sorted(current.models)
    snapshot = snapshot_of(
        current.total,
        previous.total if previous is not None else None,
        names[0] if len(names) == 1 else None,
    )
    if len(names) > 1:
        empty = RawSeries()
        snapshot.models = [
            snapshot_of(
                current.models[name],
                previous.models.get(name, empty) if previous is not None else None,
                name,
            )
            for name in names
        ]
    return snapshot


def aggregate_window(
    scrapes: Sequence[RawScrape], *, model_name: str | None = None, goodput_targets: Sequence[LatencyTarget] = ()
) -> AggregateFigures:
    """Figures of one instance over the span of its stored scrapes (the server total, or one model).

    Increases are summed scrape to scrape, so a restart inside the window loses nothing, as with
    PromQL `increase()` over every sample; passing only the first and last scrape is equivalent
    when the server did not restart. Fewer than two scrapes give `instances == 0` and no figures.
    """
    return cohort_figures([scrapes], model_name=model_name, goodput_targets=goodput_targets)


def cohort_figures(
    instances: Sequence[Sequence[RawScrape]],
    *,
    model_name: str | None = None,
    goodput_targets: Sequence[LatencyTarget] = (),
) -> AggregateFigures:
    """Figures of a group of instances (canary or control cohort) over their windows.

    Quantiles come from the bucket increases summed over all instances, rates are the sum of each
    instance's rate, error and hit ratios are ratios of summed increases. Instances with fewer
    than two scrapes contribute nothing and are not counted in `instances`.
    """
    return _window_of(_increases(instances, model_name), goodput_targets)


def cohort_counts(
    instances: Sequence[Sequence[RawScrape]], *, model_name: str | None = None
) -> judge_counts.CohortCounts:
    """What the judge reads of a cohort over a window: summed bucket increases and request counters.

    The same increases as `cohort_figures` (scrape to scrape, restarts handled as there), kept as
    counts instead of quantiles: histogram buckets per latency key, finished and failed requests,
    preemptions, and the instances that contributed (two or more scrapes in the window).
    """
    increases = _increases(instances, model_name)
    return judge_counts.cohort_counts(
        [increase.series for increase in increases], seconds=[increase.seconds for increase in increases]
    )


def _increases(instances: Sequence[Sequence[RawScrape]], model_name: str | None) -> list[_Increase]:
    increases: list[_Increase] = []
    for scrapes in instances:
        increase = _increase_over(scrapes, model_name)
        if increase is not None:
            increases.append(increase)
    return increases


def scrape_step(before: RawScrape, after: RawScrape, *, model_name: str | None = None) -> RawSeries:
    """What one instance counted between two consecutive scrapes (the server total, or one model).

    Steps never change once both scrapes are stored, so a caller that keeps recent scrapes can
    keep their steps too and pass them to `aggregate_steps`.
    """
    return _step(_select(before, model_name), _select(after, model_name))


def aggregate_steps(
    first: RawScrape,
    last: RawScrape,
    steps: Sequence[RawSeries],
    *,
    model_name: str | None = None,
    goodput_targets: Sequence[LatencyTarget] = (),
) -> AggregateFigures:
    """`aggregate_window` of scrapes `first` .. `last` (oldest first) from their `scrape_step`s.

    The result is identical to `aggregate_window` over the same scrapes: the steps are summed in
    the same order.
    """
    if not steps:
        return AggregateFigures()
    return _window_of([_increase_of_steps(first, last, steps, model_name)], goodput_targets)


def _window_of(increases: list[_Increase], goodput_targets: Sequence[LatencyTarget] = ()) -> AggregateFigures:
    if not increases:
        return AggregateFigures()
    latency, throughput, load, errors, composite, invalid = _figures(increases)
    windows = [increase.seconds for increase in increases if increase.seconds is not None]
    return AggregateFigures(
        window_s=max(windows) if windows else None,
        instances=len(increases),
        latency=latency,
        throughput=throughput,
        load=load,
        errors=errors,
        approximations=[_COMPOSITE_TTFT_APPROXIMATION] if composite else [],
        goodput=_goodput(increases, goodput_targets),
        invalid=invalid,
    )


# -------------------------------------------------------------------- increases


def _restarted(before: RawSeries, after: RawSeries) -> bool:
    start_before = before.process_start_time_s
    start_after = after.process_start_time_s
    return start_before is not None and start_after is not None and start_after > start_before + _RESTART_TOLERANCE_S


def _step(before: RawSeries | None, after: RawSeries) -> RawSeries:
    """What was counted between two cumulative readings; `before=None` means since the start."""
    if before is None or _restarted(before, after):
        return RawSeries(histograms=dict(after.histograms), counters=dict(after.counters), gauges=after.gauges)
    counters = {
        key: counter_delta(before.counters[key], value) if key in before.counters else value
        for key, value in after.counters.items()
    }
    histograms = {
        key: histogram_delta(before.histograms[key], histogram) if key in before.histograms else histogram
        for key, histogram in after.histograms.items()
    }
    return RawSeries(histograms=histograms, counters=counters, gauges=after.gauges)


def _increase_since(
    before: RawSeries | None, after: RawSeries, collected_at: datetime, window_s: float | None
) -> _Increase:
    if before is not None:
        return _Increase(series=_step(before, after), seconds=window_s)
    seconds: float | None = None
    if after.process_start_time_s is not None:
        lifetime = collected_at.timestamp() - after.process_start_time_s
        seconds = lifetime if lifetime > 0 else None
    return _Increase(series=_step(None, after), seconds=seconds)


def _select(scrape: RawScrape, model_name: str | None) -> RawSeries:
    if model_name is None:
        return scrape.total
    return scrape.models.get(model_name) or RawSeries()


def _increase_over(scrapes: Sequence[RawScrape], model_name: str | None) -> _Increase | None:
    if len(scrapes) < 2:
        return None
    ordered = sorted(scrapes, key=lambda scrape: scrape.collected_at)
    steps = [scrape_step(before, after, model_name=model_name) for before, after in itertools.pairwise(ordered)]
    return _increase_of_steps(ordered[0], ordered[-1], steps, model_name)


def _increase_of_steps(
    first: RawScrape, last: RawScrape, steps: Sequence[RawSeries], model_name: str | None
) -> _Increase:
    counters: dict[str, float] = {}
    histogram_parts: dict[str, list[CumulativeHistogram]] = {}
    for step in steps:
        for key, value in step.counters.items():
            counters[key] = counters.get(key, 0.0) + value
        for key, histogram in step.histograms.items():
            histogram_parts.setdefault(key, []).append(histogram)
    histograms: dict[str, CumulativeHistogram] = {}
    for key, parts in histogram_parts.items():
        merged = merge_histograms(parts)
        if merged is not None:
            histograms[key] = merged
    seconds = (last.collected_at - first.collected_at).total_seconds()
    return _Increase(
        series=RawSeries(histograms=histograms, counters=counters, gauges=_select(last, model_name).gauges),
        seconds=seconds if seconds > 0 else None,
    )


# -------------------------------------------------------------------- figures


def _quantiles(histogram: CumulativeHistogram | None) -> Quantiles:
    if histogram is None:
        return Quantiles()
    p50, p90, p95, p99 = (finite_or_none(value) for value in histogram_quantiles(_QUANTILES, histogram.buckets))
    return Quantiles(p50=p50, p90=p90, p95=p95, p99=p99, mean=histogram_mean(histogram), count=histogram.count)


def _composite_quantiles(parts: list[CumulativeHistogram]) -> Quantiles:
    """Quantiles of a latency made of consecutive stages, as the sum of the stages' quantiles."""

    def summed(values: list[float | None]) -> float | None:
        if any(value is None for value in values):
            return None
        return finite_or_none(math.fsum(value for value in values if value is not None))

    per_part = [histogram_quantiles(_QUANTILES, part.buckets) for part in parts]
    quantiles = [summed([finite_or_none(values[i]) for values in per_part]) for i in range(len(_QUANTILES))]
    return Quantiles(
        p50=quantiles[0],
        p90=quantiles[1],
        p95=quantiles[2],
        p99=quantiles[3],
        mean=summed([histogram_mean(part) for part in parts]),
        count=parts[0].count,
    )


def _summed_histogram(increases: list[_Increase], key: str) -> CumulativeHistogram | None:
    return merge_histograms(
        increase.series.histograms[key] for increase in increases if key in increase.series.histograms
    )


def _goodput(increases: list[_Increase], targets: Sequence[LatencyTarget]) -> Goodput | None:
    if not targets:
        return None
    keys = {target.histogram for target in targets}
    summed = {key: _summed_histogram(increases, key) for key in keys}
    return goodput({key: histogram for key, histogram in summed.items() if histogram is not None}, targets)


def _summed_counter(increases: list[_Increase], key: str) -> float | None:
    values = [increase.series.counters[key] for increase in increases if key in increase.series.counters]
    return math.fsum(values) if values else None


def _rate(increases: list[_Increase], key: str) -> float | None:
    """`sum(rate(x))`: unknown if any instance that has the counter has no known window."""
    total = 0.0
    found = False
    for increase in increases:
        value = increase.series.counters.get(key)
        if value is None:
            continue
        if increase.seconds is None:
            return None
        total += value / increase.seconds
        found = True
    return finite_or_none(total) if found else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return finite_or_none(numerator / denominator)


def _gauge(increases: list[_Increase], key: str) -> float | None:
    values = [increase.series.gauges[key] for increase in increases if key in increase.series.gauges]
    return finite_or_none(combine_gauge(key, values))


#: Figures that are rates (never negative) and fractions (within 0..1), by their dotted field name.
_RATES = (
    ("throughput", "requests_per_s"),
    ("throughput", "prompt_tokens_per_s"),
    ("throughput", "generation_tokens_per_s"),
    ("load", "preemptions_per_s"),
    ("errors", "requests_failed_per_s"),
)
_FRACTIONS = (("load", "kv_cache_usage"), ("load", "prefix_cache_hit_rate"), ("errors", "error_rate"))
_COUNTS = (("load", "requests_running"), ("load", "requests_waiting"))


def drop_impossible(groups: dict[str, msgspec.Struct]) -> list[InvalidFigure]:
    """Set to None every figure its meaning rules out, and say which and why.

    Negative rates come from counters a broken exporter wrote negative (or that went down without
    a restart); KV usage or a hit rate above 1 from a gauge in the wrong unit.
    """
    invalid: list[InvalidFigure] = []

    def check(checks: tuple[tuple[str, str], ...], bad: Callable[[float], bool], reason: str) -> None:
        for group, name in checks:
            value = getattr(groups[group], name)
            if value is not None and bad(value):
                setattr(groups[group], name, None)
                invalid.append(InvalidFigure(field=f"{group}.{name}", value=value, reason=reason))

    check(_RATES, lambda value: value < 0, "a negative rate: a counter went down without a restart")
    check(_COUNTS, lambda value: value < 0, "a negative count of requests")
    check(_FRACTIONS, lambda value: not 0 <= value <= 1, "a fraction outside 0..1")
    return invalid


def _figures(increases: list[_Increase]) -> tuple[Latency, Throughput, Load, Errors, bool, list[InvalidFigure]]:
    ttft = _summed_histogram(increases, "ttft_s")
    composite = False
    if ttft is not None:
        ttft_quantiles = _quantiles(ttft)
    else:
        parts = [_summed_histogram(increases, key) for key in COMPOSITE_TTFT]
        present = [part for part in parts if part is not None]
        composite = len(present) == len(parts)
        ttft_quantiles = _composite_quantiles(present) if composite else Quantiles()
    latency = Latency(
        ttft_s=ttft_quantiles,
        itl_s=_quantiles(_summed_histogram(increases, "itl_s")),
        e2e_s=_quantiles(_summed_histogram(increases, "e2e_s")),
        queue_s=_quantiles(_summed_histogram(increases, "queue_s")),
    )
    throughput = Throughput(
        requests_per_s=_rate(increases, "requests_finished"),
        prompt_tokens_per_s=_rate(increases, "prompt_tokens"),
        generation_tokens_per_s=_rate(increases, "generation_tokens"),
    )
    queries = _summed_counter(increases, "prefix_cache_queries")
    if queries is not None:
        hit_rate = _ratio(_summed_counter(increases, "prefix_cache_hits"), queries)
    else:
        hit_rate = _gauge(increases, "prefix_cache_hit_rate")
    load = Load(
        requests_running=_gauge(increases, "requests_running"),
        requests_waiting=_gauge(increases, "requests_waiting"),
        kv_cache_usage=_gauge(increases, "kv_cache_usage"),
        prefix_cache_hit_rate=hit_rate,
        preemptions_per_s=_rate(increases, "preemptions"),
    )
    errors = Errors(
        requests_failed_per_s=_rate(increases, "requests_failed"),
        error_rate=_ratio(
            _summed_counter(increases, "requests_failed"), _summed_counter(increases, "requests_finished")
        ),
    )
    invalid = drop_impossible({"throughput": throughput, "load": load, "errors": errors})
    return latency, throughput, load, errors, composite, invalid
