"""The load model responds to engine flags, load and faults as a real server would.

Driven through `SimulatedInstance` on a `ManualClock` and read back from the rendered page
with the `prometheus_client` parser, so each check is about what a scraper would see.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from performance_agent.simulator import ManualClock, SimulatedInstance, SimulatedServerSpec, Workload

Values = dict[tuple[str, frozenset[tuple[str, str]]], float]


def launch(
    engine: str = "vllm", *, rate: float = 8.0, flags: dict[str, object] | None = None, seed: int = 1, **kw: object
) -> tuple[SimulatedInstance, ManualClock]:
    clock = ManualClock()
    spec = SimulatedServerSpec(engine, seed=seed, flags=flags or {}, workload=Workload(arrival_rate_per_s=rate), **kw)  # type: ignore[arg-type]
    return SimulatedInstance(spec, f"{engine}-0", clock, time_scale=1.0), clock


def scrape(instance: SimulatedInstance) -> Values:
    out: Values = {}
    for family in text_string_to_metric_families(instance.metrics_text()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(values: Values, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, lbl), v in values.items() if n == name and wanted <= lbl)


def mean(values: Values, before: Values, family: str) -> float:
    count = total(values, family + "_count") - total(before, family + "_count")
    return (total(values, family + "_sum") - total(before, family + "_sum")) / count


def run_for(instance: SimulatedInstance, clock: ManualClock, seconds: float) -> Values:
    clock.advance(seconds)
    return scrape(instance)


def test_same_seed_gives_the_same_page_however_often_it_is_read() -> None:
    one, clock_one = launch(seed=3)
    many, clock_many = launch(seed=3)
    clock_one.advance(90)
    for _ in range(90):
        clock_many.advance(1)
        many.metrics_text()
    assert one.metrics_text() == many.metrics_text()
    other, clock_other = launch(seed=4)
    clock_other.advance(90)
    assert other.metrics_text() != one.metrics_text()


@pytest.mark.parametrize("engine", ["vllm", "tgi", "sglang"])
def test_counters_and_histograms_never_decrease_between_scrapes(engine: str) -> None:
    instance, clock = launch(engine, rate=30.0, flags={"--max-num-seqs": 512} if engine == "vllm" else {})
    instance.set_faults({"kv_pressure": 0.5, "error_burst": 0.1})
    previous = scrape(instance)
    cumulative = ("_total", "_count", "_sum", "_bucket")
    for _ in range(8):
        current = run_for(instance, clock, 7.0)
        for key, value in previous.items():
            if key[0].endswith(cumulative):
                assert current[key] >= value, key
        previous = current
    grows = {
        "vllm": "vllm:generation_tokens_total",
        "tgi": "tgi_request_count_total",
        "sglang": "sglang:generation_tokens_total",
    }
    assert total(previous, grows[engine]) > 0


def test_littles_law_holds() -> None:
    instance, clock = launch(rate=12.0)
    before = run_for(instance, clock, 60)
    in_system = []
    for _ in range(300):
        clock.advance(1)
        gauges = instance.state()["gauges"]
        in_system.append(gauges["running"] + gauges["waiting"])  # type: ignore[index]
    after = scrape(instance)
    finished = total(after, "vllm:e2e_request_latency_seconds_count") - total(
        before, "vllm:e2e_request_latency_seconds_count"
    )
    throughput = finished / 300
    latency = mean(after, before, "vllm:e2e_request_latency_seconds")
    assert throughput == pytest.approx(12.0, rel=0.1)
    assert sum(in_system) / len(in_system) == pytest.approx(throughput * latency, rel=0.1)


def test_raising_max_num_seqs_trades_queueing_for_kv_usage() -> None:
    small, clock_small = launch(rate=30.0, flags={"--max-num-seqs": 32})
    large, clock_large = launch(rate=30.0, flags={"max_num_seqs": 256})
    s, big = run_for(small, clock_small, 120), run_for(large, clock_large, 120)
    assert total(s, "vllm:num_requests_running") <= 32
    assert total(s, "vllm:kv_cache_usage_perc") < total(big, "vllm:kv_cache_usage_perc")
    assert total(s, "vllm:num_requests_waiting") > total(big, "vllm:num_requests_waiting")


def test_fp8_kv_cache_doubles_the_pool_and_relieves_pressure() -> None:
    auto, clock_auto = launch(rate=16.0, flags={"--gpu-memory-utilization": 0.6})
    fp8, clock_fp8 = launch(rate=16.0, flags={"--gpu-memory-utilization": 0.6, "--kv-cache-dtype": "fp8"})
    a, f = run_for(auto, clock_auto, 180), run_for(fp8, clock_fp8, 180)
    blocks = [
        float(dict(labels)["num_gpu_blocks"])
        for values in (a, f)
        for (name, labels), _ in values.items()
        if name == "vllm:cache_config_info"
    ]
    assert blocks[1] / blocks[0] == pytest.approx(2.0, rel=0.01)
    assert total(a, "vllm:num_preemptions_total") > 0
    assert total(f, "vllm:num_preemptions_total") < total(a, "vllm:num_preemptions_total")
    assert total(a, "vllm:kv_cache_usage_perc") > 0.9
    assert total(f, "vllm:kv_cache_usage_perc") < total(a, "vllm:kv_cache_usage_perc")


def test_weight_quantization_frees_kv_room_and_speeds_decode() -> None:
    results: dict[str | None, tuple[int, float]] = {}
    for quant in (None, "fp8", "awq"):
        instance, clock = launch(rate=8.0, flags={"--quantization": quant} if quant else {})
        before = run_for(instance, clock, 30)
        after = run_for(instance, clock, 120)
        capacity = instance.state()["derived"]["kv_capacity_tokens"]  # type: ignore[index]
        results[quant] = (capacity, mean(after, before, "vllm:inter_token_latency_seconds"))
    assert results[None][0] < results["fp8"][0] < results["awq"][0]
    assert results[None][1] > results["fp8"][1] > results["awq"][1]
    assert results["awq"][1] > results[None][1] * 0.3  # faster, not free: dequantization and compute remain


def test_latency_regression_multiplies_step_time() -> None:
    base, clock_base = launch(rate=2.0)
    slow, clock_slow = launch(rate=2.0)
    slow.set_faults({"latency_regression": 3.0})
    b0, s0 = run_for(base, clock_base, 30), run_for(slow, clock_slow, 30)
    b1, s1 = run_for(base, clock_base, 120), run_for(slow, clock_slow, 120)
    ratio = mean(s1, s0, "vllm:inter_token_latency_seconds") / mean(b1, b0, "vllm:inter_token_latency_seconds")
    assert 2.8 < ratio < 3.5
    assert mean(s1, s0, "vllm:e2e_request_latency_seconds") > 2.5 * mean(b1, b0, "vllm:e2e_request_latency_seconds")


def test_kv_pressure_fills_the_pool_and_causes_preemptions() -> None:
    calm, clock_calm = launch(rate=10.0)
    squeezed, clock_squeezed = launch(rate=10.0)
    squeezed.set_faults({"kv_pressure": 0.85})
    c, s = run_for(calm, clock_calm, 180), run_for(squeezed, clock_squeezed, 180)
    assert total(c, "vllm:kv_cache_usage_perc") < 0.5
    assert total(s, "vllm:kv_cache_usage_perc") > 0.9
    assert total(c, "vllm:num_preemptions_total") == 0
    assert total(s, "vllm:num_preemptions_total") > 0
    assert squeezed.state()["derived"]["pinned_kv_tokens"] > 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("engine", "failed", "everything"),
    [
        ("vllm", ("vllm:request_success_total", {"finished_reason": "error"}), ("vllm:request_success_total", {})),
        ("tgi", ("tgi_request_failure_total", {"err": "generation"}), ("tgi_request_count_total", {})),
        ("sglang", ("sglang:num_aborted_requests_total", {}), None),
    ],
)
def test_error_burst_fails_that_fraction_of_requests(
    engine: str, failed: tuple[str, dict[str, str]], everything: tuple[str, dict[str, str]] | None
) -> None:
    instance, clock = launch(engine, rate=10.0)
    instance.set_faults({"error_burst": 0.5})
    values = run_for(instance, clock, 120)
    failures = total(values, failed[0], **failed[1])
    if everything is None:
        seen = failures + total(values, "sglang:num_requests_total") + total(values, "sglang:num_running_reqs")
    else:
        seen = total(values, everything[0], **everything[1]) + (
            total(values, "vllm:num_requests_running") if engine == "vllm" else 0
        )
    assert failures / seen == pytest.approx(0.5, abs=0.06)
    instance.set_faults({"error_burst": None})
    later = run_for(instance, clock, 60)
    assert total(later, failed[0], **failed[1]) == failures


def test_queue_builds_when_arrivals_exceed_service_rate() -> None:
    instance, clock = launch(rate=60.0)
    early = run_for(instance, clock, 60)
    late = run_for(instance, clock, 60)
    assert 0 < total(early, "vllm:num_requests_waiting") < total(late, "vllm:num_requests_waiting")
    assert mean(late, early, "vllm:request_queue_time_seconds") > 10.0
    served = total(late, "vllm:e2e_request_latency_seconds_count") - total(
        early, "vllm:e2e_request_latency_seconds_count"
    )
    assert served / 60 < 40  # the server tops out well below the offered 60 req/s


def test_tgi_reserves_whole_budgets_and_sheds_load_beyond_max_concurrent_requests() -> None:
    instance, clock = launch("tgi", rate=40.0, flags={"--max-concurrent-requests": 16})
    for _ in range(6):
        values = run_for(instance, clock, 10)
        assert total(values, "tgi_batch_current_size") + total(values, "tgi_queue_size") <= 16
        assert total(values, "tgi_batch_current_max_tokens") <= total(values, "tgi_batch_max_total_tokens")
    assert total(values, "tgi_request_failure_total", err="overloaded") > 0


def test_arrivals_stop_when_the_offered_load_is_zero() -> None:
    instance, clock = launch(rate=8.0)
    run_for(instance, clock, 30)
    instance.set_load({"arrival_rate_per_s": 0})
    drained = run_for(instance, clock, 120)
    later = run_for(instance, clock, 60)
    assert total(later, "vllm:num_requests_running") == 0
    assert total(later, "vllm:prompt_tokens_total") == total(drained, "vllm:prompt_tokens_total")


def test_time_scale_runs_simulated_time_faster_than_the_clock() -> None:
    clock = ManualClock()
    fast = SimulatedInstance(SimulatedServerSpec("sglang"), "s", clock, time_scale=10.0)
    clock.advance(6.0)
    assert fast.state()["sim_time_s"] == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("engine", "flags", "message"),
    [
        ("vllm", {"--gpu-memory-utilization": 0.3}, "No available memory for the cache blocks"),
        (
            "vllm",
            {"--max-num-seqs": 512, "--max-num-batched-tokens": 256},
            "must be greater than or equal to max_num_seqs",
        ),
        ("vllm", {"--gpu-memory-utilization": 1.5}, "within (0, 1]"),
        ("vllm", {"--kv-cache-dtype": "int3"}, "invalid choice"),
        ("vllm", {"--speculative-magic": 1}, "unrecognized arguments: --speculative-magic"),
        ("tgi", {"--max-batch-total-tokens": 10_000_000}, "CUDA out of memory during warmup"),
        ("tgi", {"--max-input-tokens": 8192, "--max-total-tokens": 8192}, "must be < `max_total_tokens`"),
        ("sglang", {"--mem-fraction-static": 0.3}, "Not enough memory"),
        ("sglang", {"--max-running-requests": "many"}, "invalid int value"),
    ],
)
def test_flags_the_engine_would_refuse_leave_it_down(engine: str, flags: dict[str, object], message: str) -> None:
    instance, _ = launch(engine, flags=flags)
    state = instance.state()
    assert state["state"] == "crashed"
    assert message in str(state["start_error"])
    assert not instance.serves_data
    with pytest.raises(RuntimeError, match="not running"):
        instance.metrics_text()
