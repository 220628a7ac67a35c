"""OpenAPI examples of the collect and history endpoints.

The snapshot is a real one: the SGLang fixture page (Llama-3.1-8B under load) run through the
parser, adapter and builder, rounded. `tests/api/test_openapi_contract.py` decodes every
example strictly into its type, so these cannot drift from the code unnoticed.
"""

from __future__ import annotations

from typing import Any

__all__ = ("COLLECT_REQUEST", "SNAPSHOT")

COLLECT_REQUEST: dict[str, Any] = {
    "instance_id": "sglang-llama-0",
    "endpoint": "http://10.0.0.7:30000",
    "metrics_path": "/metrics",
    "timeout_s": 5,
}

_EMPTY = {"p50": None, "p90": None, "p95": None, "p99": None, "mean": None, "count": None}
SNAPSHOT: dict[str, Any] = {
    "instance_id": "sglang-llama-0",
    "engine": "sglang",
    "endpoint": "http://10.0.0.7:30000",
    "collected_at": "2026-01-01T12:00:00Z",
    "model_name": "meta-llama/Llama-3.1-8B-Instruct",
    "window_s": None,
    "latency": {
        "ttft_s": {"p50": 30.0, "p90": 30.0, "p95": 30.0, "p99": 30.0, "mean": 213.6535, "count": 11008.0},
        "itl_s": {"p50": 0.0931, "p90": 0.1409, "p95": 0.1498, "p99": 0.6323, "mean": 0.1171, "count": 7400757.0},
        "e2e_s": {"p50": 60.0, "p90": 60.0, "p95": 60.0, "p99": 60.0, "mean": 277.5288, "count": 11228.0},
        "queue_s": _EMPTY,
    },
    "throughput": {"requests_per_s": None, "prompt_tokens_per_s": None, "generation_tokens_per_s": None},
    "load": {
        "requests_running": 162.0,
        "requests_waiting": 2826.0,
        "kv_cache_usage": 0.28,
        "prefix_cache_hit_rate": 0.0075,
        "preemptions_per_s": None,
    },
    "errors": {"requests_failed_per_s": None, "error_rate": None},
    "engine_config": {},
    "engine_version": None,
    "approximations": [
        {
            "field": "throughput.requests_per_s",
            "formula": "rate(sglang:e2e_request_latency_seconds_count) (no sglang:num_requests_total on the page)",
        },
        {
            "field": "load.prefix_cache_hit_rate",
            "formula": "sglang:cache_hit_rate (gauge over recent prefill batches, not the window)",
        },
    ],
    "models": [],
}
