"""Snapshot builder: windows, lifetime, restarts, models, approximated TTFT, never NaN."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from performance_agent.engines.base import AdaptedPage
from performance_agent.metrics.builder import (
    RawScrape,
    build_snapshot,
    decode_raw_scrape,
    encode_raw_scrape,
    raw_scrape,
)
from performance_agent.metrics.snapshot import Approximation, CumulativeHistogram, InstanceSnapshot, RawSeries

INF = math.inf
T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
START = T0.timestamp() - 200.0


def hist(counts: list[float], total: float, edges: tuple[float, ...] = (0.1, 0.5, 1.0, INF)) -> CumulativeHistogram:
    return CumulativeHistogram(buckets=list(zip(edges, counts, strict=True)), sum=total, count=counts[-1])


def raw(
    *,
    ttft: CumulativeHistogram | None = None,
    counters: dict[str, float] | None = None,
    gauges: dict[str, float] | None = None,
    start: float | None = START,
    **histograms: CumulativeHistogram,
) -> RawSeries:
    if ttft is not None:
        histograms["ttft_s"] = ttft
    return RawSeries(
        histograms=histograms, counters=dict(counters or {}), gauges=dict(gauges or {}), process_start_time_s=start
    )


CURRENT = raw(
    ttft=hist([10, 30, 40, 50], 20.0),
    counters={
        "requests_finished": 100,
        "requests_failed": 5,
        "prompt_tokens": 5000,
        "generation_tokens": 20000,
        "preemptions": 2,
        "prefix_cache_queries": 4000,
        "prefix_cache_hits": 1000,
    },
    gauges={"requests_running": 3, "requests_waiting": 1, "kv_cache_usage": 0.4},
)


def adapted(total: RawSeries, models: dict[str, RawSeries] | None = None, **extra: object) -> AdaptedPage:
    return AdaptedPage(engine="vllm", total=total, models=models or {}, **extra)  # type: ignore[arg-type]


def snapshot(current: AdaptedPage, previous: RawScrape | None = None, at: datetime = T0) -> InstanceSnapshot:
    return build_snapshot(
        instance_id="i-1",
        engine="vllm",
        endpoint="http://127.0.0.1:8000",
        collected_at=at,
        current=current,
        previous=previous,
    )


def assert_all_finite(value: object) -> None:
    """No NaN or infinity anywhere in what the API would return."""
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for item in value.values():
            assert_all_finite(item)
    elif isinstance(value, list):
        for item in value:
            assert_all_finite(item)


class TestLifetime:
    def test_rates_over_seconds_since_the_counting_start(self) -> None:
        snap = snapshot(adapted(CURRENT))
        assert snap.window_s is None
        assert snap.throughput.requests_per_s == pytest.approx(100 / 200)
        assert snap.throughput.prompt_tokens_per_s == pytest.approx(25.0)
        assert snap.throughput.generation_tokens_per_s == pytest.approx(100.0)
        assert snap.load.preemptions_per_s == pytest.approx(0.01)
        assert snap.errors.requests_failed_per_s == pytest.approx(0.025)
        assert snap.errors.error_rate == pytest.approx(0.05)
        assert snap.load.prefix_cache_hit_rate == pytest.approx(0.25)
        assert snap.load.requests_running == 3
        assert snap.load.requests_waiting == 1
        assert snap.load.kv_cache_usage == 0.4

    def test_quantiles_over_the_cumulative_histogram(self) -> None:
        ttft = snapshot(adapted(CURRENT)).latency.ttft_s
        # rank 25 in (0.1, 0.5] holding 20, 15 of them: 0.1 + 0.4 * 15/20; ranks 45, 47.5, 49.5 are past le=1
        assert ttft.p50 == pytest.approx(0.4)
        assert ttft.p90 == 1.0
        assert ttft.p95 == 1.0
        assert ttft.p99 == 1.0
        assert ttft.mean == pytest.approx(0.4)
        assert ttft.count == 50

    def test_without_a_start_rates_are_unknown_but_ratios_are_not(self) -> None:
        no_start = msgspec.structs.replace(CURRENT, process_start_time_s=None)
        snap = snapshot(adapted(no_start))
        assert snap.throughput.requests_per_s is None
        assert snap.throughput.generation_tokens_per_s is None
        assert snap.load.preemptions_per_s is None
        assert snap.errors.requests_failed_per_s is None
        assert snap.errors.error_rate == pytest.approx(0.05)
        assert snap.load.prefix_cache_hit_rate == pytest.approx(0.25)
        assert snap.latency.ttft_s.p50 == pytest.approx(0.4)

    def test_start_in_the_future_gives_no_rates(self) -> None:
        future = msgspec.structs.replace(CURRENT, process_start_time_s=T0.timestamp() + 5)
        assert snapshot(adapted(future)).throughput.requests_per_s is None

    def test_missing_signals_are_none_never_zero(self) -> None:
        snap = snapshot(adapted(raw(gauges={"requests_running": 0.0})))
        assert snap.load.requests_running == 0.0
        for figure in (
            snap.latency.ttft_s.p50,
            snap.latency.itl_s.mean,
            snap.latency.e2e_s.count,
            snap.latency.queue_s.p99,
            snap.throughput.requests_per_s,
            snap.load.kv_cache_usage,
            snap.load.prefix_cache_hit_rate,
            snap.load.preemptions_per_s,
            snap.errors.error_rate,
            snap.errors.requests_failed_per_s,
        ):
            assert figure is None

    def test_identity_and_passthrough_fields(self) -> None:
        approximation = Approximation(field="load.kv_cache_usage", formula="a / b")
        snap = snapshot(
            adapted(CURRENT, engine_config={"block_size": 16}, engine_version="0.11.0", approximations=[approximation])
        )
        assert (snap.instance_id, snap.engine, snap.endpoint, snap.collected_at) == (
            "i-1",
            "vllm",
            "http://127.0.0.1:8000",
            T0,
        )
        assert snap.engine_config == {"block_size": 16}
        assert snap.engine_version == "0.11.0"
        assert snap.approximations == [approximation]
        assert snap.model_name is None
        assert snap.models == []


class TestWindow:
    PREVIOUS = raw(
        ttft=hist([5, 10, 20, 25], 12.0),
        counters={
            "requests_finished": 60,
            "requests_failed": 5,
            "prompt_tokens": 4000,
            "generation_tokens": 19000,
            "prefix_cache_queries": 3000,
            "prefix_cache_hits": 100,
            "preemptions": 2,
        },
        gauges={"requests_running": 9, "kv_cache_usage": 0.9},
    )

    def previous(self, series: RawSeries | None = None, seconds: float = 20.0) -> RawScrape:
        return RawScrape(collected_at=T0 - timedelta(seconds=seconds), total=series or self.PREVIOUS)

    def test_figures_cover_only_the_seconds_since_the_previous_scrape(self) -> None:
        snap = snapshot(adapted(CURRENT), self.previous())
        assert snap.window_s == 20.0
        assert snap.throughput.requests_per_s == pytest.approx(40 / 20)
        assert snap.throughput.prompt_tokens_per_s == pytest.approx(1000 / 20)
        assert snap.throughput.generation_tokens_per_s == pytest.approx(1000 / 20)
        assert snap.errors.requests_failed_per_s == 0.0
        assert snap.errors.error_rate == 0.0
        assert snap.load.preemptions_per_s == 0.0
        assert snap.load.prefix_cache_hit_rate == pytest.approx(900 / 1000)
        # Gauges are the values now, not the previous ones.
        assert snap.load.requests_running == 3
        assert snap.load.kv_cache_usage == 0.4

    def test_quantiles_over_the_bucket_increase(self) -> None:
        ttft = snapshot(adapted(CURRENT), self.previous()).latency.ttft_s
        # increase: le=0.1 5, le=0.5 20, le=1 20, +Inf 25; rank 12.5 in (0.1, 0.5] holding 15: 0.1 + 0.4 * 7.5/15
        assert ttft.p50 == pytest.approx(0.3)
        # rank 22.5 is past le=1 (20): highest finite edge
        assert ttft.p90 == 1.0
        assert ttft.mean == pytest.approx(8 / 25)
        assert ttft.count == 25

    def test_counter_reset_counts_everything_since_the_restart(self) -> None:
        before = raw(counters={"requests_finished": 500, "generation_tokens": 90000}, ttft=hist([40, 60, 80, 90], 50.0))
        snap = snapshot(adapted(CURRENT), self.previous(before, seconds=50))
        assert snap.throughput.requests_per_s == pytest.approx(100 / 50)
        assert snap.throughput.generation_tokens_per_s == pytest.approx(20000 / 50)
        assert snap.latency.ttft_s.count == 50  # histogram went down: the whole current one is new

    def test_restart_seen_from_a_later_counting_start(self) -> None:
        # Counters grew past the old values after a restart: only the start time reveals it.
        before = raw(counters={"requests_finished": 80}, start=START - 3600)
        snap = snapshot(adapted(CURRENT), self.previous(before, seconds=50))
        assert snap.throughput.requests_per_s == pytest.approx(100 / 50)

    def test_counter_created_since_the_previous_scrape_counts_from_zero(self) -> None:
        before = raw(counters={"requests_finished": 90})
        snap = snapshot(adapted(CURRENT), self.previous(before, seconds=10))
        assert snap.throughput.requests_per_s == pytest.approx(1.0)
        assert snap.errors.requests_failed_per_s == pytest.approx(0.5)

    def test_no_new_requests_means_unknown_ratios_and_zero_rates(self) -> None:
        snap = snapshot(adapted(CURRENT), self.previous(CURRENT))
        assert snap.throughput.requests_per_s == 0.0
        assert snap.errors.error_rate is None
        assert snap.load.prefix_cache_hit_rate is None
        assert snap.latency.ttft_s.p50 is None
        assert snap.latency.ttft_s.mean is None
        assert snap.latency.ttft_s.count == 0
        assert_all_finite(msgspec.to_builtins(snap))

    @pytest.mark.parametrize("seconds", [0.0, -30.0])
    def test_previous_not_older_falls_back_to_lifetime(self, seconds: float) -> None:
        snap = snapshot(adapted(CURRENT), self.previous(seconds=seconds))
        assert snap.window_s is None
        assert snap.throughput.requests_per_s == pytest.approx(0.5)


class TestModels:
    A = raw(counters={"requests_finished": 30}, gauges={"requests_running": 1, "kv_cache_usage": 0.2})
    B = raw(counters={"requests_finished": 70}, gauges={"requests_running": 2, "kv_cache_usage": 0.4})

    def test_several_models_listed_with_the_same_shape(self) -> None:
        total = raw(counters={"requests_finished": 100}, gauges={"requests_running": 3, "kv_cache_usage": 0.4})
        previous = RawScrape(
            collected_at=T0 - timedelta(seconds=10),
            total=raw(counters={"requests_finished": 80}),
            models={"a": raw(counters={"requests_finished": 10})},
        )
        snap = snapshot(adapted(total, {"b": self.B, "a": self.A}), previous)
        assert snap.model_name is None
        assert [model.model_name for model in snap.models] == ["a", "b"]
        a, b = snap.models
        assert a.throughput.requests_per_s == pytest.approx(2.0)
        assert b.throughput.requests_per_s == pytest.approx(7.0)  # new since the previous scrape
        assert snap.throughput.requests_per_s == pytest.approx(2.0)
        assert a.load.requests_running == 1
        assert b.load.kv_cache_usage == 0.4
        assert a.window_s == b.window_s == 10.0
        assert a.instance_id == "i-1"
        assert a.models == []

    def test_single_model_names_the_snapshot(self) -> None:
        snap = snapshot(adapted(self.A, {"a": self.A}))
        assert snap.model_name == "a"
        assert snap.models == []


class TestApproximatedTtft:
    def test_quantile_is_queue_quantile_plus_prefill_quantile(self) -> None:
        queue = hist([50, 90, 100], 3.0, edges=(0.01, 0.1, INF))
        prefill = hist([20, 40, 40], 4.0, edges=(0.05, 0.2, INF))
        snap = snapshot(adapted(raw(queue_s=queue, prefill_s=prefill)))
        ttft = snap.latency.ttft_s
        # queue p50: rank 50 = le 0.01 -> 0.01; prefill p50: rank 20 = le 0.05 -> 0.05
        assert ttft.p50 == pytest.approx(0.01 + 0.05)
        # queue p90: rank 90 -> 0.1; prefill p90: rank 36 in (0.05, 0.2] holding 20, 16: 0.05 + 0.15 * 0.8
        assert ttft.p90 == pytest.approx(0.1 + 0.17)
        # queue p99: rank 99 past le=0.1 -> 0.1; prefill p99: rank 39.6: 0.05 + 0.15 * 19.6/20
        assert ttft.p99 == pytest.approx(0.1 + 0.05 + 0.15 * 19.6 / 20)
        assert ttft.mean == pytest.approx(3.0 / 100 + 4.0 / 40)
        assert ttft.count == 100
        assert snap.latency.queue_s.p50 == pytest.approx(0.01)

    def test_needs_both_stages(self) -> None:
        queue = hist([50, 90, 100], 3.0, edges=(0.01, 0.1, INF))
        assert snapshot(adapted(raw(queue_s=queue))).latency.ttft_s.p50 is None

    def test_a_stage_without_observations_gives_no_sum(self) -> None:
        queue = hist([50, 90, 100], 3.0, edges=(0.01, 0.1, INF))
        idle = hist([0, 0, 0], 0.0, edges=(0.05, 0.2, INF))
        ttft = snapshot(adapted(raw(queue_s=queue, prefill_s=idle))).latency.ttft_s
        assert ttft.p50 is None
        assert ttft.mean is None


def test_raw_scrape_round_trips_through_storage_bytes_with_inf_edges() -> None:
    scrape = raw_scrape(adapted(CURRENT, {"m": CURRENT}), T0)
    decoded = decode_raw_scrape(encode_raw_scrape(scrape))
    assert decoded == scrape
    assert decoded.total.histograms["ttft_s"].buckets[-1] == (INF, 50.0)
    assert decoded.collected_at == T0


def test_impossible_figures_are_dropped_and_named() -> None:
    broken = raw(
        counters={"requests_finished": -400, "generation_tokens": 1000},
        gauges={"kv_cache_usage": 1.3, "requests_waiting": -2, "requests_running": 1},
    )
    snapshot = build_snapshot(
        instance_id="i", engine="vllm", endpoint="http://x", collected_at=T0, current=adapted(broken), previous=None
    )
    assert snapshot.throughput.requests_per_s is None
    assert snapshot.throughput.generation_tokens_per_s == pytest.approx(5.0)
    assert (snapshot.load.kv_cache_usage, snapshot.load.requests_waiting) == (None, None)
    assert snapshot.load.requests_running == 1
    assert [(item.field, item.value) for item in snapshot.invalid] == [
        ("throughput.requests_per_s", -2.0),
        ("load.requests_waiting", -2),
        ("load.kv_cache_usage", 1.3),
    ]
    assert "negative rate" in snapshot.invalid[0].reason
    assert "outside 0..1" in snapshot.invalid[2].reason


def test_sound_figures_leave_nothing_invalid() -> None:
    snapshot = build_snapshot(
        instance_id="i", engine="vllm", endpoint="http://x", collected_at=T0, current=adapted(CURRENT), previous=None
    )
    assert snapshot.invalid == []
    assert snapshot.load.kv_cache_usage == 0.4
