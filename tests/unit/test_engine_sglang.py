"""SGLang adapter: rank labels, renames across releases, fallbacks and revealed config."""

from __future__ import annotations

import math

import pytest

from performance_agent.engines.sglang import SglangAdapter
from performance_agent.metrics.exposition import parse_page

INF = math.inf
M = 'model_name="qwen"'

# Scheduler series of a TP=2, DP-attention=2 server: tp_rank 1 repeats tp_rank 0's batch.
RANKED_PAGE = f"""# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{{dp_rank="0",engine_type="unified",{M},moe_ep_rank="0",pp_rank="0",tp_rank="0"}} 10
sglang:num_running_reqs{{dp_rank="0",engine_type="unified",{M},moe_ep_rank="0",pp_rank="0",tp_rank="1"}} 10
sglang:num_running_reqs{{dp_rank="1",engine_type="unified",{M},moe_ep_rank="0",pp_rank="0",tp_rank="0"}} 6
sglang:num_running_reqs{{dp_rank="1",engine_type="unified",{M},moe_ep_rank="1",pp_rank="0",tp_rank="0"}} 6
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{{dp_rank="0",engine_type="unified",{M},pp_rank="0",tp_rank="0"}} 4
sglang:num_queue_reqs{{dp_rank="0",engine_type="unified",{M},pp_rank="1",tp_rank="0"}} 4
sglang:num_queue_reqs{{dp_rank="1",engine_type="unified",{M},pp_rank="0",tp_rank="0"}} 1
# TYPE sglang:token_usage gauge
sglang:token_usage{{dp_rank="0",engine_type="unified",{M},pp_rank="0",tp_rank="0"}} 0.3
sglang:token_usage{{dp_rank="1",engine_type="unified",{M},pp_rank="0",tp_rank="0"}} 0.9
sglang:token_usage{{dp_rank="1",engine_type="unified",{M},pp_rank="0",tp_rank="1"}} 0.95
# TYPE sglang:max_total_num_tokens gauge
sglang:max_total_num_tokens{{dp_rank="0",engine_type="unified",{M},pp_rank="0",tp_rank="0"}} 500000
sglang:max_total_num_tokens{{dp_rank="1",engine_type="unified",{M},pp_rank="0",tp_rank="0"}} 500000
# TYPE sglang:cache_config_info gauge
sglang:cache_config_info{{{M},num_pages="31250",page_size="16",tp_rank="0"}} 1
# TYPE sglang:num_retracted_requests_total counter
sglang:num_retracted_requests_total{{dp_rank="0",{M},tp_rank="0"}} 3
sglang:num_retracted_requests_total{{dp_rank="1",{M},tp_rank="0"}} 2
sglang:num_retracted_requests_total{{dp_rank="1",{M},tp_rank="1"}} 2
# TYPE sglang:queue_time_seconds histogram
sglang:queue_time_seconds_bucket{{dp_rank="0",{M},tp_rank="0",le="0.0"}} 5
sglang:queue_time_seconds_bucket{{dp_rank="0",{M},tp_rank="0",le="0.1"}} 8
sglang:queue_time_seconds_bucket{{dp_rank="0",{M},tp_rank="0",le="+Inf"}} 10
sglang:queue_time_seconds_sum{{dp_rank="0",{M},tp_rank="0"}} 1.0
sglang:queue_time_seconds_count{{dp_rank="0",{M},tp_rank="0"}} 10
sglang:queue_time_seconds_bucket{{dp_rank="0",{M},tp_rank="1",le="0.0"}} 5
sglang:queue_time_seconds_bucket{{dp_rank="0",{M},tp_rank="1",le="0.1"}} 8
sglang:queue_time_seconds_bucket{{dp_rank="0",{M},tp_rank="1",le="+Inf"}} 10
sglang:queue_time_seconds_sum{{dp_rank="0",{M},tp_rank="1"}} 1.0
sglang:queue_time_seconds_count{{dp_rank="0",{M},tp_rank="1"}} 10
sglang:queue_time_seconds_bucket{{dp_rank="1",{M},tp_rank="0",le="0.0"}} 0
sglang:queue_time_seconds_bucket{{dp_rank="1",{M},tp_rank="0",le="0.1"}} 2
sglang:queue_time_seconds_bucket{{dp_rank="1",{M},tp_rank="0",le="+Inf"}} 4
sglang:queue_time_seconds_sum{{dp_rank="1",{M},tp_rank="0"}} 2.0
sglang:queue_time_seconds_count{{dp_rank="1",{M},tp_rank="0"}} 4
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{{{M}}} 200
# TYPE sglang:num_aborted_requests_total counter
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{{{M}}} 10000
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{{cache_source="device",{M}}} 3000
sglang:cached_tokens_total{{cache_source="host",{M}}} 1000
"""


def test_tp_pp_ep_ranks_other_than_zero_are_skipped_and_dp_ranks_summed() -> None:
    adapted = SglangAdapter().adapt(parse_page(RANKED_PAGE))
    gauges = adapted.models["qwen"].gauges
    assert gauges["requests_running"] == 16  # dp0 tp0 (10) + dp1 tp0 ep0 (6)
    assert gauges["requests_waiting"] == 5  # dp0 pp0 (4) + dp1 (1)
    assert gauges["kv_cache_usage"] == 0.9  # fullest DP rank; tp_rank 1's 0.95 is skipped
    assert adapted.total.counters["preemptions"] == 5
    queue = adapted.total.histograms["queue_s"]
    assert queue.buckets == [(0.0, 5.0), (0.1, 10.0), (INF, 14.0)]
    assert queue.sum == 3.0
    assert queue.count == 14.0


def test_declared_but_unsampled_aborted_counter_means_zero_aborts() -> None:
    counters = SglangAdapter().adapt(parse_page(RANKED_PAGE)).total.counters
    assert counters["requests_finished"] == 200
    assert counters["requests_failed"] == 0


def test_prefix_cache_from_cached_tokens_over_prompt_tokens() -> None:
    adapted = SglangAdapter().adapt(parse_page(RANKED_PAGE))
    assert adapted.total.counters["prefix_cache_hits"] == 4000  # device + host
    assert adapted.total.counters["prefix_cache_queries"] == 10000
    assert adapted.approximations == []


def test_config_from_capacity_gauges_and_cache_config_info() -> None:
    config = SglangAdapter().adapt(parse_page(RANKED_PAGE)).engine_config
    assert config == {"max_total_num_tokens": 500000, "page_size": 16, "num_pages": 31250, "data_parallel_ranks": 2}


def test_first_release_name_label_old_names_and_fallbacks() -> None:
    page = parse_page(
        """sglang:num_running_reqs{name="llama"} 3
sglang:num_used_tokens{name="llama"} 2500
sglang:max_total_num_tokens{name="llama"} 10000
sglang:max_prefill_tokens{name="llama"} 16384
sglang:max_running_requests{name="llama"} 4097
sglang:context_len{name="llama"} 8192
sglang:total_retracted_reqs{name="llama"} 7
sglang:time_per_output_token_seconds_bucket{le="0.01",name="llama"} 2
sglang:time_per_output_token_seconds_bucket{le="+Inf",name="llama"} 3
sglang:time_per_output_token_seconds_sum{name="llama"} 0.05
sglang:time_per_output_token_seconds_count{name="llama"} 3
sglang:e2e_request_latency_seconds_bucket{le="1.0",name="llama"} 4
sglang:e2e_request_latency_seconds_bucket{le="+Inf",name="llama"} 5
sglang:e2e_request_latency_seconds_sum{name="llama"} 6.0
sglang:e2e_request_latency_seconds_count{name="llama"} 5
sglang:cache_hit_rate{name="llama"} 0.25
"""
    )
    adapted = SglangAdapter().adapt(page)
    assert list(adapted.models) == ["llama"]
    llama = adapted.models["llama"]
    assert llama.gauges == {"requests_running": 3.0, "kv_cache_usage": 0.25, "prefix_cache_hit_rate": 0.25}
    assert llama.counters == {"requests_finished": 5.0, "preemptions": 7.0}
    assert llama.histograms["itl_s"].buckets == [(0.01, 2.0), (INF, 3.0)]
    assert adapted.engine_config == {
        "max_total_num_tokens": 10000,
        "max_prefill_tokens": 16384,
        "max_running_requests": 4097,
        "context_len": 8192,
    }
    fields = sorted(a.field for a in adapted.approximations)
    assert fields == ["load.kv_cache_usage", "load.prefix_cache_hit_rate", "throughput.requests_per_s"]


def test_inter_token_latency_name_wins_and_undeclared_aborts_stay_unknown() -> None:
    page = parse_page(
        f"""sglang:inter_token_latency_seconds_bucket{{{M},le="0.02"}} 8
sglang:inter_token_latency_seconds_bucket{{{M},le="+Inf"}} 10
sglang:inter_token_latency_seconds_sum{{{M}}} 0.2
sglang:inter_token_latency_seconds_count{{{M}}} 10
sglang:time_per_output_token_seconds_bucket{{{M},le="0.02"}} 1
sglang:time_per_output_token_seconds_bucket{{{M},le="+Inf"}} 1
sglang:time_per_output_token_seconds_sum{{{M}}} 0.01
sglang:time_per_output_token_seconds_count{{{M}}} 1
sglang:num_requests_total{{{M}}} 9
"""
    )
    adapted = SglangAdapter().adapt(page)
    assert adapted.total.histograms["itl_s"].count == 10
    assert adapted.total.counters == {"requests_finished": 9.0}


def test_aborted_requests_are_failures() -> None:
    page = parse_page(f"sglang:num_requests_total{{{M}}} 50\nsglang:num_aborted_requests_total{{{M}}} 2\n")
    assert SglangAdapter().adapt(page).total.counters == {"requests_finished": 50.0, "requests_failed": 2.0}


@pytest.mark.parametrize("capacity", ["0", "NaN"])
def test_kv_fallback_needs_a_usable_capacity(capacity: str) -> None:
    page = parse_page(f"sglang:num_used_tokens{{{M}}} 5\nsglang:max_total_num_tokens{{{M}}} {capacity}\n")
    adapted = SglangAdapter().adapt(page)
    assert "kv_cache_usage" not in adapted.total.gauges
    assert adapted.approximations == []
