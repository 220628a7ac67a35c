"""vLLM adapter: current and older names, data-parallel ranks, several models, revealed config."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest

from performance_agent.engines.vllm import VllmAdapter
from performance_agent.metrics.exposition import parse_page

if TYPE_CHECKING:
    from performance_agent.engines.base import AdaptedPage

INF = math.inf
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def ttft_family(engine: str, counts: tuple[float, float, float], total: float, model: str = MODEL) -> str:
    labels = f'engine="{engine}",model_name="{model}"'
    low, mid, everything = counts
    return (
        f'vllm:time_to_first_token_seconds_bucket{{{labels},le="0.1"}} {low}\n'
        f'vllm:time_to_first_token_seconds_bucket{{{labels},le="0.5"}} {mid}\n'
        f'vllm:time_to_first_token_seconds_bucket{{{labels},le="+Inf"}} {everything}\n'
        f"vllm:time_to_first_token_seconds_count{{{labels}}} {everything}\n"
        f"vllm:time_to_first_token_seconds_sum{{{labels}}} {total}\n"
        f"vllm:time_to_first_token_seconds_created{{{labels}}} 1.7e9\n"
    )


CONFIG_RANK_1 = (
    'vllm:cache_config_info{block_size="16",cache_dtype="fp8",enable_prefix_caching="True",engine="1",'
    'gpu_memory_utilization="0.85",num_gpu_blocks="999"} 1'
)
CONFIG_RANK_0 = (
    'vllm:cache_config_info{block_size="16",cache_dtype="fp8",enable_prefix_caching="True",engine="0",'
    'gpu_memory_utilization="0.9",kv_cache_size_tokens="262144",num_gpu_blocks="16384",'
    'prefix_caching_hash_algo="sha256"} 1'
)

CURRENT_TWO_RANKS = (
    "# TYPE vllm:time_to_first_token_seconds histogram\n"
    + ttft_family("0", (4, 8, 10), 2.5)
    + ttft_family("1", (1, 5, 10), 4.0)
    + f"""# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{{engine="0",model_name="{MODEL}",le="0.01"}} 50
vllm:inter_token_latency_seconds_bucket{{engine="0",model_name="{MODEL}",le="+Inf"}} 100
vllm:inter_token_latency_seconds_count{{engine="0",model_name="{MODEL}"}} 100
vllm:inter_token_latency_seconds_sum{{engine="0",model_name="{MODEL}"}} 1.5
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{{engine="0",model_name="{MODEL}",le="0.01"}} 7
vllm:time_per_output_token_seconds_bucket{{engine="0",model_name="{MODEL}",le="+Inf"}} 9
vllm:time_per_output_token_seconds_count{{engine="0",model_name="{MODEL}"}} 9
vllm:time_per_output_token_seconds_sum{{engine="0",model_name="{MODEL}"}} 0.2
# TYPE vllm:request_success_total counter
vllm:request_success_total{{engine="0",finished_reason="stop",model_name="{MODEL}"}} 90
vllm:request_success_total{{engine="0",finished_reason="length",model_name="{MODEL}"}} 5
vllm:request_success_total{{engine="0",finished_reason="abort",model_name="{MODEL}"}} 3
vllm:request_success_total{{engine="1",finished_reason="stop",model_name="{MODEL}"}} 40
vllm:request_success_total{{engine="1",finished_reason="error",model_name="{MODEL}"}} 2
# TYPE vllm:request_success_created gauge
vllm:request_success_created{{engine="0",finished_reason="stop",model_name="{MODEL}"}} 1.6e9
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{engine="0",model_name="{MODEL}"}} 1000
vllm:prompt_tokens_total{{engine="1",model_name="{MODEL}"}} 500
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{engine="0",model_name="{MODEL}"}} 2000
vllm:generation_tokens_total{{engine="1",model_name="{MODEL}"}} 1000
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{engine="0",model_name="{MODEL}"}} 4
vllm:num_preemptions_total{{engine="1",model_name="{MODEL}"}} 1
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{{engine="0",model_name="{MODEL}"}} 800
vllm:prefix_cache_queries_total{{engine="1",model_name="{MODEL}"}} 200
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{{engine="0",model_name="{MODEL}"}} 400
vllm:prefix_cache_hits_total{{engine="1",model_name="{MODEL}"}} 50
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{MODEL}"}} 7
vllm:num_requests_running{{engine="1",model_name="{MODEL}"}} 5
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{MODEL}"}} 2
vllm:num_requests_waiting{{engine="1",model_name="{MODEL}"}} 0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="{MODEL}"}} 0.25
vllm:kv_cache_usage_perc{{engine="1",model_name="{MODEL}"}} 0.75
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{{engine="0",model_name="{MODEL}"}} 0.99
# TYPE vllm:cache_config_info gauge
{CONFIG_RANK_1}
{CONFIG_RANK_0}
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.5e9
"""
)


@pytest.fixture(scope="module")
def adapted_two_ranks() -> AdaptedPage:
    return VllmAdapter().adapt(parse_page(CURRENT_TWO_RANKS))


def test_dp_rank_histograms_are_summed_bucket_by_bucket(adapted_two_ranks: AdaptedPage) -> None:
    ttft = adapted_two_ranks.total.histograms["ttft_s"]
    assert ttft.buckets == [(0.1, 5.0), (0.5, 13.0), (INF, 20.0)]
    assert ttft.count == 20.0
    assert ttft.sum == pytest.approx(6.5)
    assert adapted_two_ranks.models[MODEL].histograms["ttft_s"] == ttft


def test_current_itl_name_wins_over_the_deprecated_one(adapted_two_ranks: AdaptedPage) -> None:
    itl = adapted_two_ranks.total.histograms["itl_s"]
    assert itl.buckets == [(0.01, 50.0), (INF, 100.0)]
    assert itl.sum == 1.5


def test_counters_are_summed_over_ranks_and_failures_are_abort_plus_error(adapted_two_ranks: AdaptedPage) -> None:
    counters = adapted_two_ranks.total.counters
    assert counters["requests_finished"] == 90 + 5 + 3 + 40 + 2
    assert counters["requests_failed"] == 3 + 2
    assert counters["prompt_tokens"] == 1500
    assert counters["generation_tokens"] == 3000
    assert counters["preemptions"] == 5
    assert counters["prefix_cache_queries"] == 1000
    assert counters["prefix_cache_hits"] == 450


def test_gauges_running_waiting_summed_kv_maxed_new_name_wins(adapted_two_ranks: AdaptedPage) -> None:
    gauges = adapted_two_ranks.total.gauges
    assert gauges["requests_running"] == 12
    assert gauges["requests_waiting"] == 2
    assert gauges["kv_cache_usage"] == 0.75  # not 0.99 from the deprecated gpu_cache_usage_perc


def test_cache_config_is_rank_zero_converted_to_types(adapted_two_ranks: AdaptedPage) -> None:
    config = adapted_two_ranks.engine_config
    assert config["block_size"] == 16
    assert config["cache_dtype"] == "fp8"
    assert config["enable_prefix_caching"] is True
    assert config["gpu_memory_utilization"] == 0.9
    assert config["kv_cache_size_tokens"] == 262144
    assert config["num_gpu_blocks"] == 16384
    assert config["prefix_caching_hash_algo"] == "sha256"
    assert config["data_parallel_ranks"] == 2
    assert "engine" not in config


def test_counting_start_is_the_earliest_created_timestamp(adapted_two_ranks: AdaptedPage) -> None:
    # request_success_created 1.6e9 is earlier than ttft's 1.7e9; process_start_time is only a fallback.
    assert adapted_two_ranks.total.process_start_time_s == 1.6e9
    assert adapted_two_ranks.approximations == []
    assert adapted_two_ranks.engine_version is None


def test_several_models_give_per_model_series_and_a_server_total() -> None:
    page = parse_page(
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        + ttft_family("0", (4, 8, 10), 2.5, model="a")
        + ttft_family("0", (0, 2, 4), 3.0, model="b")
        + """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="a"} 3
vllm:num_requests_running{engine="0",model_name="b"} 4
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="a"} 0.5
vllm:kv_cache_usage_perc{engine="0",model_name="b"} 0.2
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="a"} 10
vllm:prompt_tokens_total{engine="0",model_name="b"} 32
"""
    )
    adapted = VllmAdapter().adapt(page)
    assert sorted(adapted.models) == ["a", "b"]
    assert adapted.models["b"].histograms["ttft_s"].buckets == [(0.1, 0.0), (0.5, 2.0), (INF, 4.0)]
    assert adapted.models["a"].gauges == {"requests_running": 3.0, "kv_cache_usage": 0.5}
    assert adapted.models["b"].counters == {"prompt_tokens": 32.0}
    assert adapted.total.histograms["ttft_s"].buckets == [(0.1, 4.0), (0.5, 10.0), (INF, 14.0)]
    assert adapted.total.gauges == {"requests_running": 7.0, "kv_cache_usage": 0.5}
    assert adapted.total.counters == {"prompt_tokens": 42.0}


def test_v1_0_8_block_prefix_counters_and_deprecated_names() -> None:
    page = parse_page(
        """# HELP vllm:gpu_prefix_cache_queries_total GPU prefix cache queries, in terms of number of queried blocks.
# TYPE vllm:gpu_prefix_cache_queries_total counter
vllm:gpu_prefix_cache_queries_total{model_name="m"} 64
# TYPE vllm:gpu_prefix_cache_hits_total counter
vllm:gpu_prefix_cache_hits_total{model_name="m"} 16
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.4
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{model_name="m",le="0.05"} 3
vllm:time_per_output_token_seconds_bucket{model_name="m",le="+Inf"} 4
vllm:time_per_output_token_seconds_count{model_name="m"} 4
vllm:time_per_output_token_seconds_sum{model_name="m"} 0.3
"""
    )
    adapted = VllmAdapter().adapt(page)
    assert adapted.total.counters == {"prefix_cache_queries": 64.0, "prefix_cache_hits": 16.0}
    assert adapted.total.gauges == {"kv_cache_usage": 0.4}
    assert adapted.total.histograms["itl_s"].buckets == [(0.05, 3.0), (INF, 4.0)]
    assert [a.field for a in adapted.approximations] == ["load.prefix_cache_hit_rate"]
    assert "blocks" in adapted.approximations[0].formula
    assert "data_parallel_ranks" not in adapted.engine_config


def test_v0_prefix_hit_rate_gauge_minus_one_means_unused() -> None:
    unused = VllmAdapter().adapt(parse_page('vllm:gpu_prefix_cache_hit_rate{model_name="m"} -1.0\n'))
    assert unused.total.gauges == {}
    assert unused.approximations == []
    used = VllmAdapter().adapt(parse_page('vllm:gpu_prefix_cache_hit_rate{model_name="m"} 0.625\n'))
    assert used.total.gauges == {"prefix_cache_hit_rate": 0.625}
    assert used.approximations[0].field == "load.prefix_cache_hit_rate"


def test_newest_cached_prompt_tokens_fallback_for_hit_rate() -> None:
    page = parse_page(
        """vllm:prompt_tokens_total{engine="0",model_name="m"} 1000
vllm:prompt_tokens_cached_total{engine="0",model_name="m"} 250
"""
    )
    adapted = VllmAdapter().adapt(page)
    assert adapted.total.counters["prefix_cache_queries"] == 1000
    assert adapted.total.counters["prefix_cache_hits"] == 250
    assert "prompt_tokens_cached" in adapted.approximations[0].formula


def test_missing_metrics_stay_absent_not_zero() -> None:
    adapted = VllmAdapter().adapt(parse_page('vllm:num_requests_running{model_name="m"} 0\n'))
    assert adapted.total.gauges == {"requests_running": 0.0}
    assert adapted.total.counters == {}
    assert adapted.total.histograms == {}
    assert adapted.total.process_start_time_s is None


def test_histogram_cut_before_its_inf_bucket_is_not_reported() -> None:
    page = parse_page(
        """vllm:e2e_request_latency_seconds_sum{model_name="m"} 3.0
vllm:e2e_request_latency_seconds_bucket{model_name="m",le="0.3"} 1
vllm:e2e_request_latency_seconds_bucket{model_name="m",le="0.5"} 2
"""
    )
    assert VllmAdapter().adapt(page).total.histograms == {}


def test_nan_samples_are_ignored() -> None:
    page = parse_page(
        """vllm:num_requests_running{engine="0",model_name="m"} NaN
vllm:num_requests_running{engine="1",model_name="m"} 3
vllm:prompt_tokens_total{engine="0",model_name="m"} NaN
"""
    )
    adapted = VllmAdapter().adapt(page)
    assert adapted.total.gauges == {"requests_running": 3.0}
    assert adapted.total.counters == {}
