"""The one place where stored scrapes become analysis figures: the analysed window and the SLO time line.

Why two inputs: the cumulative series (`RawScrape`) give the window's quantiles and rates from
summed deltas (never averaged percentiles), while the per-scrape snapshots already hold each
scrape's own window, which is exactly the time line the SLO math needs, and the gauge readings
whose mean stands for the window (a gauge at one instant says little about fifteen minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from performance_agent.analysis.schemas import WindowFigures
from performance_agent.clock import utc
from performance_agent.metrics.builder import aggregate_window
from performance_agent.metrics.snapshot import Approximation, Errors, Latency, Load, Throughput

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from performance_agent.metrics import builder
    from performance_agent.metrics.builder import RawScrape
    from performance_agent.metrics.goodput import LatencyTarget

__all__ = (
    "ScrapeFigures",
    "WindowSource",
    "decode_scrape_figures",
    "for_analysis",
    "models_seen",
    "select_model",
    "timeline",
    "window_figures",
)

_GAUGES = ("requests_running", "requests_waiting", "kv_cache_usage")


# The field list repeats `InstanceSnapshot`'s on purpose: a partial type is how msgspec decodes
# only these fields of a stored document (the rest is skipped), so the duplicate-code check is
# told to expect it here.
# pylint: disable=duplicate-code
class ScrapeFigures(msgspec.Struct, kw_only=True):
    """The parts of a stored snapshot analysis reads (the rest of the document is skipped when decoding)."""

    collected_at: datetime
    model_name: str | None = None
    window_s: float | None = None
    latency: Latency = msgspec.field(default_factory=Latency)
    throughput: Throughput = msgspec.field(default_factory=Throughput)
    load: Load = msgspec.field(default_factory=Load)
    errors: Errors = msgspec.field(default_factory=Errors)
    approximations: list[Approximation] = msgspec.field(default_factory=list)
    engine_version: str | None = None
    models: list[ScrapeFigures] = msgspec.field(default_factory=list)


# pylint: enable=duplicate-code


_decoder = msgspec.json.Decoder(ScrapeFigures)


def decode_scrape_figures(document: bytes) -> ScrapeFigures:
    """A stored snapshot (JSON, as `GET /history` serves it) read as scrape figures."""
    return _decoder.decode(document)


def select_model(scrape: ScrapeFigures, model_name: str | None) -> ScrapeFigures | None:
    """The server total, or one model's figures; None when that scrape does not show the model."""
    if model_name is None:
        return scrape
    for model in scrape.models:
        if model.model_name == model_name:
            return model
    if not scrape.models and scrape.model_name == model_name:
        return scrape  # a single-model page: the total is that model
    return None


def models_seen(scrapes: Iterable[ScrapeFigures]) -> list[str]:
    names: set[str] = set()
    for scrape in scrapes:
        names.update(m.model_name for m in scrape.models if m.model_name)
        if not scrape.models and scrape.model_name:
            names.add(scrape.model_name)
    return sorted(names)


def for_analysis(
    figures: builder.AggregateFigures,
    *,
    engine: str,
    ended_at: datetime | None,
    samples: int,
    load: Load | None = None,
    approximations: Sequence[Approximation] = (),
) -> WindowFigures:
    """The builder's figures with the analysis context added; `load` replaces end-of-window gauges."""
    merged = list(figures.approximations)
    merged += [a for a in approximations if all(a.field != m.field for m in merged)]
    return WindowFigures(
        engine=engine,
        window_s=figures.window_s,
        instances=max(figures.instances, 1),
        latency=figures.latency,
        throughput=figures.throughput,
        load=load if load is not None else figures.load,
        errors=figures.errors,
        approximations=merged,
        goodput=figures.goodput,
        samples=samples,
        ended_at=ended_at,
    )


def _scrape_window(scrape: ScrapeFigures, engine: str) -> WindowFigures:
    return WindowFigures(
        engine=engine,
        window_s=scrape.window_s,
        instances=1,
        latency=scrape.latency,
        throughput=scrape.throughput,
        load=scrape.load,
        errors=scrape.errors,
        approximations=list(scrape.approximations),
        samples=1,
        ended_at=scrape.collected_at,
    )


def timeline(scrapes: Iterable[ScrapeFigures], engine: str, model_name: str | None = None) -> list[WindowFigures]:
    """Each scrape's own window (since the previous scrape), oldest first: the SLO time line."""
    selected = []
    for scrape in scrapes:
        chosen = select_model(scrape, model_name)
        if chosen is not None:
            selected.append(msgspec.structs.replace(chosen, collected_at=scrape.collected_at))
    selected.sort(key=lambda s: s.collected_at)
    return [_scrape_window(s, engine) for s in selected]


def _mean_gauges(readings: Sequence[Load], fallback: Load) -> Load:
    def mean(name: str) -> float | None:
        values = [v for v in (getattr(r, name) for r in readings) if v is not None]
        return sum(values) / len(values) if values else None

    return msgspec.structs.replace(fallback, **{name: mean(name) for name in _GAUGES})


@dataclass(frozen=True, slots=True)
class WindowSource:
    """Where the figures came from: `history` (summed deltas of stored scrapes) or one scrape's own window."""

    kind: str
    start: datetime | None
    end: datetime | None
    scrapes: int


def window_figures(
    raws: Sequence[RawScrape],
    scrapes: Sequence[ScrapeFigures],
    *,
    engine: str,
    model_name: str | None = None,
    aggregated: builder.AggregateFigures | None = None,
    goodput_targets: Sequence[LatencyTarget] = (),
) -> tuple[WindowFigures, WindowSource] | None:
    """Figures of the window the inputs span, or None when they hold no usable data.

    Two or more cumulative readings: quantiles and rates from their summed deltas, gauges as the
    mean of every reading in the window. A single reading: that scrape's own figures (since the
    scrape before it, or over the server's lifetime), with the window's start where it is known.
    `aggregated` is `aggregate_window(raws, model_name=model_name, goodput_targets=goodput_targets)`
    when the caller has it already. Goodput needs bucket increases, so a single reading has none.
    """
    pairs = [(s, select_model(s, model_name)) for s in sorted(scrapes, key=lambda s: s.collected_at)]
    chosen = [(scrape, model) for scrape, model in pairs if model is not None]
    if len(raws) >= 2:
        if model_name is not None and not chosen:
            return None
        if aggregated is None:
            aggregated = aggregate_window(raws, model_name=model_name, goodput_targets=goodput_targets)
        if aggregated.instances == 0:
            return None
        ended_at = max(raw.collected_at for raw in raws)
        started_at = min(raw.collected_at for raw in raws)
        readings = [model.load for _, model in chosen]
        figures = for_analysis(
            aggregated,
            engine=engine,
            ended_at=ended_at,
            samples=len(raws),
            load=_mean_gauges(readings, aggregated.load) if readings else None,
            approximations=chosen[-1][1].approximations if chosen else (),
        )
        return figures, WindowSource(kind="history", start=started_at, end=ended_at, scrapes=len(raws))
    if not chosen:
        return None
    scrape, model = chosen[-1]
    figures = _scrape_window(msgspec.structs.replace(model, collected_at=scrape.collected_at), engine)
    start: datetime | None = None
    if model.window_s is not None:
        start = scrape.collected_at - timedelta(seconds=model.window_s)
    else:
        counting = [r.total.process_start_time_s for r in raws if r.collected_at == scrape.collected_at]
        if counting and counting[0] is not None:
            start = utc(counting[0])
    return figures, WindowSource(kind="single_scrape", start=start, end=scrape.collected_at, scrapes=1)
