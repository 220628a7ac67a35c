"""Names, types, labels and bucket edges of every simulated page, read back by the oracle parser.

Expected values are copied from the engines' sources listed in docs/sources.md (and, for the older
profiles, from the real pages in `tests/fixtures/metrics`), never from the simulator's tables.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from performance_agent.simulator import ManualClock, SimulatedInstance, SimulatedServerSpec
from performance_agent.simulator.load_model import Workload
from tests.paths import METRIC_PAGES


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split()]


VLLM_TTFT = numbers(
    "0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25 0.5 0.75 1.0 2.5 5.0 7.5 10.0 20.0 40.0 80.0 160.0 640.0 2560.0"
)
VLLM_ITL = numbers("0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.4 0.5 0.75 1.0 2.5 5.0 7.5 10.0 20.0 40.0 80.0")
VLLM_LATENCY = numbers(
    "0.3 0.5 0.8 1.0 1.5 2.0 2.5 5.0 10.0 15.0 20.0 30.0 40.0 50.0 60.0 120.0 240.0 480.0 960.0 1920.0 7680.0"
)
VLLM_ITERATION = numbers("1 8 16 32 64 128 256 512 1024 2048 4096 8192 16384")
ONE_TWO_FIVE_8192 = numbers("1 2 5 10 20 50 100 200 500 1000 2000 5000")
TGI_DURATION_PRINTED = numbers(
    "0.00015 0.000225 0.0003375 0.00050625 0.000759375 0.00113906 0.00170859 0.00256289 "
    "0.00384434 0.0057665 0.00864976 0.0129746 0.019462 0.0291929 0.0437894 0.0656841 0.0985261 "
    "0.147789 0.221684 0.332526 0.498789 0.748183 1.12227 1.68341 2.52512 3.78768 5.68151 "
    "8.52227 12.7834 19.1751 28.7627 43.144 64.716 97.074 145.611"
)
SGLANG_TTFT = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
SGLANG_ITL = numbers(
    "0.002 0.004 0.006 0.008 0.010 0.015 0.020 0.025 0.030 0.035 0.040 0.060 0.080 0.100 0.200 "
    "0.400 0.600 0.800 1.0 2.0 4.0 6.0 8.0"
)
SGLANG_E2E = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400]
SGLANG_QUEUE = numbers(
    "0.0 0.1 0.2 0.5 1 2 3 4 5 10 15 20 30 40 50 60 70 80 90 100 200 300 400 500 600 700 800 "
    "900 1000 1200 1400 1600 1800 2000 2500 3000"
)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def page(engine: str, version: str = "current", seconds: float = 60.0, **spec: object) -> str:
    clock = ManualClock()
    instance = SimulatedInstance(SimulatedServerSpec(engine, version=version, seed=5, **spec), f"{engine}-0", clock)  # type: ignore[arg-type]
    clock.advance(seconds)
    return instance.metrics_text()


def families(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    return {
        f.name: (f.type, [(s.name, dict(s.labels), s.value) for s in f.samples])
        for f in text_string_to_metric_families(text)
    }


def edges(samples: list[tuple[str, dict[str, str], float]]) -> list[float]:
    seen: list[float] = []
    for name, labels, _ in samples:
        if name.endswith("_bucket") and float(labels["le"]) not in seen:
            seen.append(float(labels["le"]))
    return seen


VLLM_CURRENT_TYPES = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:num_requests_waiting_by_reason": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:engine_sleep_state": "gauge",
    "vllm:cache_config_info": "gauge",
    "vllm:num_preemptions": "counter",
    "vllm:prompt_tokens": "counter",
    "vllm:prompt_tokens_by_source": "counter",
    "vllm:prompt_tokens_cached": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:request_success": "counter",
    "vllm:prefix_cache_queries": "counter",
    "vllm:prefix_cache_hits": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:request_time_per_output_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
    "vllm:request_inference_time_seconds": "histogram",
    "vllm:request_prefill_time_seconds": "histogram",
    "vllm:request_decode_time_seconds": "histogram",
    "vllm:request_prompt_tokens": "histogram",
    "vllm:request_generation_tokens": "histogram",
    "vllm:request_max_num_generation_tokens": "histogram",
    "vllm:request_params_max_tokens": "histogram",
    "vllm:request_params_n": "histogram",
    "vllm:iteration_tokens_total": "histogram",
    "vllm:request_prefill_kv_computed_tokens": "histogram",
    "vllm:request_num_preemptions": "histogram",
}


def test_vllm_current_families_types_and_labels() -> None:
    fams = families(page("vllm"))
    vllm = {
        name: kind for name, (kind, _) in fams.items() if name.startswith("vllm:") and not name.endswith("_created")
    }
    assert vllm == VLLM_CURRENT_TYPES
    for name, (_, samples) in fams.items():
        if name.startswith("vllm:") and name != "vllm:cache_config_info":
            for _, labels, _ in samples:
                assert labels["model_name"] == MODEL
                assert labels["engine"] == "0"
    reasons = {labels["finished_reason"] for _, labels, _ in fams["vllm:request_success"][1]}
    assert reasons == {"stop", "length", "abort", "error"}
    assert {labels["reason"] for _, labels, _ in fams["vllm:num_requests_waiting_by_reason"][1]} == {
        "capacity",
        "deferred",
    }
    sources = {labels["source"] for _, labels, _ in fams["vllm:prompt_tokens_by_source"][1]}
    assert sources == {"local_compute", "local_cache_hit", "external_kv_transfer"}
    # every counter and histogram also has its `_created` gauge family (single-process client)
    for name, kind in VLLM_CURRENT_TYPES.items():
        if kind != "gauge":
            assert fams[name + "_created"][0] == "gauge"
    info = fams["vllm:cache_config_info"][1][0][1]
    assert {
        "block_size",
        "cache_dtype",
        "gpu_memory_utilization",
        "num_gpu_blocks",
        "enable_prefix_caching",
        "engine",
    } <= set(info)
    assert info["block_size"] == "16"
    assert info["cache_dtype"] == "auto"
    assert fams["process_start_time_seconds"][1][0][2] == pytest.approx(1_700_000_000.0)


def test_vllm_current_bucket_edges() -> None:
    fams = families(page("vllm"))
    expected: dict[str, list[float]] = {
        "vllm:time_to_first_token_seconds": VLLM_TTFT,
        "vllm:inter_token_latency_seconds": VLLM_ITL,
        "vllm:request_time_per_output_token_seconds": VLLM_ITL,
        "vllm:iteration_tokens_total": VLLM_ITERATION,
        "vllm:request_params_n": [1.0, 2.0, 5.0, 10.0, 20.0],
        "vllm:request_num_preemptions": [1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0],
    }
    for name in (
        "e2e_request_latency",
        "request_queue_time",
        "request_inference_time",
        "request_prefill_time",
        "request_decode_time",
    ):
        expected[f"vllm:{name}_seconds"] = VLLM_LATENCY
    for name in (
        "request_prompt_tokens",
        "request_generation_tokens",
        "request_max_num_generation_tokens",
        "request_params_max_tokens",
        "request_prefill_kv_computed_tokens",
    ):
        expected[f"vllm:{name}"] = ONE_TWO_FIVE_8192
    for name, want in expected.items():
        assert edges(fams[name][1]) == [*map(float, want), math.inf], name


def test_vllm_data_parallel_ranks_each_have_an_engine_label() -> None:
    fams = families(page("vllm", flags={"--data-parallel-size": 4}))
    engines = {labels["engine"] for _, labels, _ in fams["vllm:num_requests_running"][1]}
    assert engines == {"0", "1", "2", "3"}
    assert {s[1]["engine"] for s in fams["vllm:cache_config_info"][1]} == {"0", "1", "2", "3"}


def test_vllm_0_10_ships_old_and_new_names_side_by_side() -> None:
    fams = families(page("vllm", "0.10"))
    assert {"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc", "vllm:time_per_output_token_seconds"} <= set(fams)
    assert {"vllm:gpu_prefix_cache_queries", "vllm:prefix_cache_queries"} <= set(fams)
    assert "vllm:inter_token_latency_seconds" not in fams
    assert "vllm:request_time_per_output_token_seconds" not in fams
    old_kv, new_kv = fams["vllm:gpu_cache_usage_perc"][1][0][2], fams["vllm:kv_cache_usage_perc"][1][0][2]
    assert old_kv == new_kv
    assert fams["vllm:gpu_prefix_cache_queries"][1][0][2] == fams["vllm:prefix_cache_queries"][1][0][2]
    assert edges(fams["vllm:time_per_output_token_seconds"][1]) == [*VLLM_ITL, math.inf]
    assert fams["vllm:num_requests_running"][1][0][1] == {"model_name": MODEL, "engine": "0"}


def test_vllm_old_matches_the_v0_8_sample_and_counts_prefix_blocks() -> None:
    fixture = families((METRIC_PAGES / "vllm-prodstack318-v1-0.8.prom").read_text())
    ours_text = page("vllm", "old")
    ours = families(ours_text)
    for name, (kind, samples) in fixture.items():
        assert ours[name][0] == kind, name
        for _, labels, _ in samples:
            assert set(ours[name][1][0][1]) == set(labels), name
    for line in (METRIC_PAGES / "vllm-prodstack318-v1-0.8.prom").read_text().splitlines():
        if line.startswith("# HELP vllm:"):
            assert line in ours_text
    assert "vllm:kv_cache_usage_perc" not in ours
    assert "vllm:inter_token_latency_seconds" not in ours
    current = families(page("vllm", "current"))  # same seed: same traffic, counted in tokens
    tokens = current["vllm:prefix_cache_queries"][1][0][2]
    blocks = ours["vllm:gpu_prefix_cache_queries"][1][0][2]
    finished = next(v for n, _, v in current["vllm:time_to_first_token_seconds"][1] if n.endswith("_count"))
    assert tokens / 16 <= blocks <= tokens / 16 + finished
    assert ours["vllm:gpu_prefix_cache_hits"][1][0][2] <= current["vllm:prefix_cache_hits"][1][0][2] / 16


def test_tgi_families_suffixes_and_buckets() -> None:
    text = page("tgi", workload=Workload(arrival_rate_per_s=8.0))
    sample_names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert not {name for name in sample_names if name.endswith(("_total", "_created"))}
    assert "tgi_request_count" in sample_names
    fams = families(text)
    assert {n: k for n, (k, _) in fams.items()} == {
        "tgi_request_count": "counter",
        "tgi_request_success": "counter",
        "tgi_batch_inference_count": "counter",
        "tgi_batch_inference_success": "counter",
        "tgi_batch_concat": "counter",
        "tgi_queue_size": "gauge",
        "tgi_batch_current_size": "gauge",
        "tgi_batch_current_max_tokens": "gauge",
        "tgi_batch_max_total_tokens": "gauge",
        "tgi_request_input_length": "histogram",
        "tgi_request_max_new_tokens": "histogram",
        "tgi_batch_next_size": "histogram",
        "tgi_batch_forward_duration": "histogram",
        "tgi_batch_inference_duration": "histogram",
        "tgi_batch_decode_duration": "histogram",
        "tgi_batch_filter_duration": "histogram",
        "tgi_request_duration": "histogram",
        "tgi_request_validation_duration": "histogram",
        "tgi_request_queue_duration": "histogram",
        "tgi_request_inference_duration": "histogram",
        "tgi_request_mean_time_per_token_duration": "histogram",
        "tgi_request_generated_tokens": "histogram",
        "tgi_request_skipped_tokens": "summary",
    }
    for name, (_kind, samples) in fams.items():
        if name.endswith("duration"):
            found = edges(samples)
            assert found[:-1] == pytest.approx(TGI_DURATION_PRINTED, rel=1e-5), name
            assert len(found) == 36
    assert edges(fams["tgi_request_input_length"][1])[:2] == [81.91, 163.82]  # 100 linear buckets up to 8191
    assert edges(fams["tgi_request_input_length"][1])[-2] == pytest.approx(8191.0)
    assert edges(fams["tgi_request_generated_tokens"][1])[-2] == pytest.approx(8192.0)
    assert edges(fams["tgi_batch_next_size"][1]) == [*map(float, range(1, 1025)), math.inf]
    assert {s[1]["method"] for s in fams["tgi_batch_forward_duration"][1]} == {"prefill", "decode"}
    assert 'le="0.00015000000000000001"' in text  # the router's repeated multiplication, printed in full


def test_tgi_failures_appear_only_once_something_failed() -> None:
    assert "tgi_request_failure" not in page("tgi")
    clock = ManualClock()
    instance = SimulatedInstance(SimulatedServerSpec("tgi", seed=1), "tgi-0", clock)
    instance.set_faults({"error_burst": 0.5})
    clock.advance(30)
    fams = families(instance.metrics_text())
    assert [s[1] for s in fams["tgi_request_failure"][1]] == [{"err": "generation"}]


def test_sglang_current_families_labels_and_buckets() -> None:
    text = page("sglang")
    assert "_created" not in text
    fams = families(text)
    scheduler = {"engine_type": "unified", "model_name": MODEL, "moe_ep_rank": "0", "pp_rank": "0", "tp_rank": "0"}
    for name in (
        "sglang:num_running_reqs",
        "sglang:num_queue_reqs",
        "sglang:token_usage",
        "sglang:num_used_tokens",
        "sglang:max_total_num_tokens",
        "sglang:gen_throughput",
        "sglang:cache_hit_rate",
        "sglang:num_retracted_requests",
    ):
        assert fams[name][1][0][1] == scheduler, name
    for name in (
        "sglang:prompt_tokens",
        "sglang:generation_tokens",
        "sglang:cached_tokens",
        "sglang:num_requests",
        "sglang:num_aborted_requests",
        "sglang:time_to_first_token_seconds",
    ):
        assert fams[name][1][0][1] == {"model_name": MODEL}, name
    assert edges(fams["sglang:time_to_first_token_seconds"][1]) == [*map(float, SGLANG_TTFT), math.inf]
    assert edges(fams["sglang:inter_token_latency_seconds"][1]) == [*SGLANG_ITL, math.inf]
    assert edges(fams["sglang:e2e_request_latency_seconds"][1]) == [*map(float, SGLANG_E2E), math.inf]
    assert edges(fams["sglang:queue_time_seconds"][1]) == [*map(float, SGLANG_QUEUE), math.inf]
    assert "sglang:time_per_output_token_seconds" not in fams
    lines = text.splitlines()
    first_ttft = next(i for i, line in enumerate(lines) if line.startswith("sglang:time_to_first_token_seconds"))
    assert lines[first_ttft].startswith("sglang:time_to_first_token_seconds_sum{")  # multiprocess order


def test_sglang_old_matches_the_2024_sample() -> None:
    fixture = families((METRIC_PAGES / "sglang-docs-2024-llama31-8b-loaded.prom").read_text())
    ours_text = page("sglang", "old")
    ours = families(ours_text)
    assert {n: k for n, (k, _) in ours.items()} == {n: k for n, (k, _) in fixture.items()}
    for name, (kind, samples) in fixture.items():
        assert {k for _, labels, _ in samples for k in labels} == {k for _, labels, _ in ours[name][1] for k in labels}
        if kind == "histogram" and edges(samples):
            assert edges(ours[name][1]) == edges(samples), name
    for line in (METRIC_PAGES / "sglang-docs-2024-llama31-8b-loaded.prom").read_text().splitlines():
        if line.startswith("# HELP"):
            assert line in ours_text


def test_unknown_engine_and_version_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        SimulatedInstance(SimulatedServerSpec("triton"), "x", ManualClock())
    with pytest.raises(ValueError, match="version"):
        SimulatedInstance(SimulatedServerSpec("tgi", version="0.10"), "x", ManualClock())
    with pytest.raises(ValueError, match="time_scale"):
        SimulatedInstance(SimulatedServerSpec("tgi"), "x", ManualClock(), time_scale=0)
