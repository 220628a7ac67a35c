"""TGI adapter: suffix-less counters, lazily created series, and the approximated signals."""

from __future__ import annotations

import math

import pytest

from performance_agent.engines.tgi import TgiAdapter
from performance_agent.metrics.exposition import parse_page

INF = math.inf

TGI_PAGE = """# TYPE tgi_request_count counter
tgi_request_count 120
# TYPE tgi_request_success counter
tgi_request_success 90
# TYPE tgi_request_failure counter
tgi_request_failure{err="overloaded"} 6
tgi_request_failure{err="validation"} 4
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{le="0.5"} 10
tgi_request_duration_bucket{le="2"} 80
tgi_request_duration_bucket{le="+Inf"} 90
tgi_request_duration_sum 120.5
tgi_request_duration_count 90
# TYPE tgi_request_queue_duration histogram
tgi_request_queue_duration_bucket{le="0.01"} 50
tgi_request_queue_duration_bucket{le="0.1"} 90
tgi_request_queue_duration_bucket{le="+Inf"} 100
tgi_request_queue_duration_sum 3.0
tgi_request_queue_duration_count 100
# TYPE tgi_batch_inference_duration histogram
tgi_batch_inference_duration_bucket{method="prefill",le="0.05"} 20
tgi_batch_inference_duration_bucket{method="prefill",le="0.2"} 40
tgi_batch_inference_duration_bucket{method="prefill",le="+Inf"} 40
tgi_batch_inference_duration_sum{method="prefill"} 4.0
tgi_batch_inference_duration_count{method="prefill"} 40
tgi_batch_inference_duration_bucket{method="decode",le="0.05"} 1000
tgi_batch_inference_duration_bucket{method="decode",le="0.2"} 1000
tgi_batch_inference_duration_bucket{method="decode",le="+Inf"} 1000
tgi_batch_inference_duration_sum{method="decode"} 20.0
tgi_batch_inference_duration_count{method="decode"} 1000
# TYPE tgi_batch_forward_duration histogram
tgi_batch_forward_duration_bucket{method="decode",le="0.02"} 600
tgi_batch_forward_duration_bucket{method="decode",le="0.05"} 900
tgi_batch_forward_duration_bucket{method="decode",le="+Inf"} 1000
tgi_batch_forward_duration_sum{method="decode"} 25.0
tgi_batch_forward_duration_count{method="decode"} 1000
tgi_batch_forward_duration_bucket{method="prefill",le="0.02"} 1
tgi_batch_forward_duration_bucket{method="prefill",le="0.05"} 1
tgi_batch_forward_duration_bucket{method="prefill",le="+Inf"} 40
tgi_batch_forward_duration_sum{method="prefill"} 9.0
tgi_batch_forward_duration_count{method="prefill"} 40
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="+Inf"} 100
tgi_request_input_length_sum 51200
tgi_request_input_length_count 100
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 90
tgi_request_generated_tokens_sum 18000
tgi_request_generated_tokens_count 90
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 12
# TYPE tgi_queue_size gauge
tgi_queue_size 3
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 40960
# TYPE tgi_batch_max_total_tokens gauge
tgi_batch_max_total_tokens 163840
"""


def test_requests_finished_are_successes_plus_failures() -> None:
    counters = TgiAdapter().adapt(parse_page(TGI_PAGE)).total.counters
    assert counters["requests_finished"] == 100
    assert counters["requests_failed"] == 10


def test_histograms_read_with_method_filters() -> None:
    histograms = TgiAdapter().adapt(parse_page(TGI_PAGE)).total.histograms
    assert histograms["e2e_s"].buckets == [(0.5, 10.0), (2.0, 80.0), (INF, 90.0)]
    assert histograms["queue_s"].sum == 3.0
    assert histograms["prefill_s"].buckets == [(0.05, 20.0), (0.2, 40.0), (INF, 40.0)]
    assert histograms["prefill_s"].sum == 4.0
    # ITL is the decode forward step, not the prefill one and not the router-side inference step.
    assert histograms["itl_s"].buckets == [(0.02, 600.0), (0.05, 900.0), (INF, 1000.0)]
    assert histograms["itl_s"].sum == 25.0
    assert "ttft_s" not in histograms


def test_tokens_gauges_kv_proxy_and_config() -> None:
    adapted = TgiAdapter().adapt(parse_page(TGI_PAGE))
    assert adapted.total.counters["prompt_tokens"] == 51200
    assert adapted.total.counters["generation_tokens"] == 18000
    assert adapted.total.gauges["requests_running"] == 12
    assert adapted.total.gauges["requests_waiting"] == 3
    assert adapted.total.gauges["kv_cache_usage"] == pytest.approx(40960 / 163840)
    assert adapted.engine_config == {"max_batch_total_tokens": 163840}
    assert adapted.models == {}
    assert "preemptions" not in adapted.total.counters
    assert "prefix_cache_queries" not in adapted.total.counters


def test_every_derived_field_is_listed_with_its_formula() -> None:
    adapted = TgiAdapter().adapt(parse_page(TGI_PAGE))
    by_field = {approximation.field: approximation.formula for approximation in adapted.approximations}
    assert set(by_field) == {
        "latency.ttft_s",
        "latency.itl_s",
        "load.kv_cache_usage",
        "throughput.prompt_tokens_per_s",
        "throughput.generation_tokens_per_s",
    }
    assert "tgi_request_queue_duration" in by_field["latency.ttft_s"]
    assert 'tgi_batch_inference_duration{method="prefill"}' in by_field["latency.ttft_s"]
    assert 'tgi_batch_forward_duration{method="decode"}' in by_field["latency.itl_s"]
    assert "tgi_batch_current_max_tokens / tgi_batch_max_total_tokens" in by_field["load.kv_cache_usage"]


def test_failure_counter_not_yet_created_means_zero_failures() -> None:
    adapted = TgiAdapter().adapt(parse_page("tgi_request_success 7\n"))
    assert adapted.total.counters == {"requests_finished": 7.0, "requests_failed": 0.0}


def test_only_failures_so_far() -> None:
    adapted = TgiAdapter().adapt(parse_page('tgi_request_failure{err="overloaded"} 2\n'))
    assert adapted.total.counters == {"requests_finished": 2.0, "requests_failed": 2.0}


def test_total_suffixed_spelling_is_accepted() -> None:
    adapted = TgiAdapter().adapt(
        parse_page('tgi_request_success_total 5\ntgi_request_failure_total{err="dropped"} 1\n')
    )
    assert adapted.total.counters == {"requests_finished": 6.0, "requests_failed": 1.0}


def test_no_outcome_counters_means_unknown_and_no_approximation_without_inputs() -> None:
    adapted = TgiAdapter().adapt(parse_page("tgi_request_count 1\n"))
    assert adapted.total.counters == {}
    assert adapted.total.gauges == {}
    assert adapted.approximations == []
    assert adapted.engine_config == {}


def test_kv_proxy_needs_a_positive_capacity() -> None:
    adapted = TgiAdapter().adapt(parse_page("tgi_batch_current_max_tokens 10\ntgi_batch_max_total_tokens 0\n"))
    assert "kv_cache_usage" not in adapted.total.gauges
    assert adapted.engine_config == {"max_batch_total_tokens": 0}


def test_ttft_approximation_needs_both_stages() -> None:
    page = parse_page(
        'tgi_request_queue_duration_bucket{le="+Inf"} 1\ntgi_request_queue_duration_sum 0.1\n'
        "tgi_request_queue_duration_count 1\n"
    )
    adapted = TgiAdapter().adapt(page)
    assert [a.field for a in adapted.approximations] == []
    assert set(adapted.total.histograms) == {"queue_s"}
