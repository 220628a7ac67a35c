"""OpenAPI examples of the instances endpoints (registration and SLO targets).

`tests/api/test_openapi_contract.py` decodes every example strictly into its type, so these
cannot drift from the code unnoticed.
"""

from __future__ import annotations

from typing import Any

__all__ = ("INSTANCE", "INSTANCE_CREATE", "INSTANCE_REPLACE", "INSTANCE_WITH_SLO", "SLO_UPDATE")

INSTANCE_CREATE: dict[str, Any] = {
    "instance_id": "vllm-llama-0",
    "engine": "vllm",
    "endpoint": "http://10.0.0.5:8000",
    "metrics_path": "/metrics",
    "labels": {"team": "search", "pool": "a"},
    "slo": {"ttft_p99_s": 2.0, "itl_p99_s": 0.1, "error_rate": 0.01},
    "engine_args": {"--max-num-seqs": 256, "--gpu-memory-utilization": 0.9},
    "gpu": {"model": "H100-80GB", "memory_gib": 80, "count": 1},
    "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "architecture": "LlamaForCausalLM", "parameters_b": 8},
    "headers": {"Authorization": {"env": "VLLM_TOKEN", "prefix": "Bearer "}},
}

INSTANCE_REPLACE: dict[str, Any] = {key: value for key, value in INSTANCE_CREATE.items() if key != "instance_id"}

INSTANCE: dict[str, Any] = {
    **INSTANCE_CREATE,
    # the targets the body named, the rest from the configured defaults (here the built-in ones)
    "slo": {
        "ttft_p99_s": 2.0,
        "ttft_p95_s": 1.0,
        "itl_p99_s": 0.1,
        "e2e_p99_s": 30.0,
        "error_rate": 0.01,
        "min_generation_tokens_per_s": None,
        "target_ratio": 0.99,
    },
    "tls_verify": True,
    "ca_bundle": None,
    "status": "up",
    "last_seen": "2026-01-01T12:00:00Z",
    "last_scrape_at": "2026-01-01T12:00:00Z",
    "last_error": None,
    "consecutive_failures": 0,
    "created_at": "2026-01-01T09:30:00Z",
    "updated_at": "2026-01-01T09:30:00Z",
}

SLO_UPDATE: dict[str, Any] = {
    "ttft_p99_s": 1.5,
    "ttft_p95_s": 0.8,
    "itl_p99_s": 0.08,
    "error_rate": 0.005,
    "target_ratio": 0.995,
}

#: The answer of `PUT /instances/{id}/slo`: the registration with the targets of `SLO_UPDATE`,
#: the one it did not name (`e2e_p99_s`) from the defaults.
INSTANCE_WITH_SLO: dict[str, Any] = {
    **INSTANCE,
    "labels": {"team": "search"},
    "slo": {**INSTANCE["slo"], **SLO_UPDATE},
    "engine_args": {"max_num_seqs": 256},
    "gpu": {"model": "H100-80GB", "memory_gib": 80.0, "count": 1},
    "model": {
        "name": "meta-llama/Llama-3.1-8B-Instruct",
        "architecture": None,
        "parameters_b": 8.0,
        "max_model_len": None,
    },
    "headers": {},
    "created_at": "2026-01-01T09:00:00Z",
    "updated_at": "2026-01-01T12:00:05Z",
}
