"""The one adapter from stored scrapes to analysis figures: summed deltas, gauge means, models, single scrapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from performance_agent.analysis.window import (
    decode_scrape_figures,
    for_analysis,
    models_seen,
    timeline,
    window_figures,
)
from performance_agent.metrics.builder import AggregateFigures, RawScrape, aggregate_window
from performance_agent.metrics.snapshot import (
    Approximation,
    CumulativeHistogram,
    InstanceSnapshot,
    Load,
    RawSeries,
    Throughput,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def raw(at_s: float, finished: float, running: float, ttft_counts: tuple[float, float]) -> RawScrape:
    below, total = ttft_counts
    series = RawSeries(
        counters={"requests_finished": finished, "requests_failed": 0.0},
        gauges={"requests_running": running, "requests_waiting": 0.0},
        histograms={
            "ttft_s": CumulativeHistogram(buckets=[(0.5, below), (float("inf"), total)], sum=total * 0.3, count=total)
        },
    )
    return RawScrape(collected_at=T0 + timedelta(seconds=at_s), total=series, models={"m1": series})


def scrape_doc(at_s: float, running: float, window_s: float | None = 15.0, **extra: object) -> bytes:
    snapshot = InstanceSnapshot(
        instance_id="i",
        engine="vllm",
        endpoint="e",
        collected_at=T0 + timedelta(seconds=at_s),
        model_name="m1",
        window_s=window_s,
        load=Load(requests_running=running, requests_waiting=0.0),
        **extra,  # type: ignore[arg-type]
    )
    return msgspec.json.encode(snapshot)


RAWS = [raw(0, 100, 10, (80, 100)), raw(15, 130, 20, (100, 130)), raw(30, 190, 60, (110, 190))]
DOCS = [decode_scrape_figures(scrape_doc(s, r)) for s, r in ((0, 10), (15, 20), (30, 60))]


def test_quantiles_and_rates_come_from_summed_deltas_and_gauges_are_means() -> None:
    computed = window_figures(RAWS, DOCS, engine="vllm")
    assert computed is not None
    figures, source = computed
    expected = aggregate_window(RAWS)
    assert figures.latency.ttft_s == expected.latency.ttft_s
    assert figures.throughput.requests_per_s == pytest.approx(90 / 30)
    assert figures.load.requests_running == pytest.approx(30.0)  # mean of 10, 20, 60; the builder's would be 60
    assert expected.load.requests_running == 60.0
    assert (figures.engine, figures.samples, figures.ended_at, figures.window_s) == (
        "vllm",
        3,
        RAWS[-1].collected_at,
        30.0,
    )
    assert (source.kind, source.start, source.end, source.scrapes) == ("history", T0, T0 + timedelta(seconds=30), 3)


def test_one_model_of_the_server() -> None:
    computed = window_figures(RAWS, DOCS, engine="vllm", model_name="m1")
    assert computed is not None
    assert computed[0].throughput.requests_per_s == pytest.approx(3.0)
    assert window_figures(RAWS, DOCS, engine="vllm", model_name="other") is None
    assert models_seen(DOCS) == ["m1"]


def test_a_single_scrape_uses_its_own_window() -> None:
    computed = window_figures(RAWS[:1], DOCS[:1], engine="vllm")
    assert computed is not None
    figures, source = computed
    assert source.kind == "single_scrape"
    assert source.start == T0 - timedelta(seconds=15)
    assert figures.load.requests_running == 10.0


def test_a_single_lifetime_scrape_starts_at_the_counting_start() -> None:
    lifetime = RawScrape(collected_at=T0, total=RawSeries(process_start_time_s=T0.timestamp() - 600))
    doc = decode_scrape_figures(scrape_doc(0, 4, window_s=None))
    computed = window_figures([lifetime], [doc], engine="vllm")
    assert computed is not None
    assert computed[1].start == T0 - timedelta(seconds=600)
    unknown = window_figures([RawScrape(collected_at=T0, total=RawSeries())], [doc], engine="vllm")
    assert unknown is not None
    assert unknown[1].start is None


def test_no_scrape_is_no_data() -> None:
    assert window_figures([], [], engine="vllm") is None


def test_for_analysis_keeps_the_builders_figures_and_merges_approximations() -> None:
    built = AggregateFigures(
        window_s=60.0,
        instances=1,
        throughput=Throughput(requests_per_s=2.0),
        approximations=[Approximation(field="latency.ttft_s", formula="a")],
    )
    page = [Approximation(field="latency.ttft_s", formula="b"), Approximation(field="latency.itl_s", formula="c")]
    figures = for_analysis(built, engine="tgi", ended_at=T0, samples=5, approximations=page)
    assert figures.throughput.requests_per_s == 2.0
    assert [(a.field, a.formula) for a in figures.approximations] == [("latency.ttft_s", "a"), ("latency.itl_s", "c")]


def test_the_timeline_is_oldest_first_and_per_model() -> None:
    multi = InstanceSnapshot(
        instance_id="i",
        engine="vllm",
        endpoint="e",
        collected_at=T0,
        window_s=15.0,
        models=[
            InstanceSnapshot(
                instance_id="i", engine="vllm", endpoint="e", collected_at=T0, model_name="a", window_s=15.0
            ),
            InstanceSnapshot(
                instance_id="i", engine="vllm", endpoint="e", collected_at=T0, model_name="b", window_s=15.0,
                load=Load(requests_running=7.0),
            ),
        ],
    )  # fmt: skip
    docs = [decode_scrape_figures(msgspec.json.encode(multi)), *reversed(DOCS[1:])]
    windows = timeline(docs, "vllm")
    assert [w.ended_at for w in windows] == [T0, T0 + timedelta(seconds=15), T0 + timedelta(seconds=30)]
    only_b = timeline(docs, "vllm", model_name="b")
    assert [(w.ended_at, w.load.requests_running) for w in only_b] == [(T0, 7.0)]
    assert models_seen(docs) == ["a", "b", "m1"]
