"""A deterministic, realistic vLLM V1 `/metrics` page for benchmarks and parser tests.

The page is rendered by `prometheus_client.generate_latest` (the library vLLM itself uses), so its
formatting, label order, `_created` families and float spelling are the real ones; only the values
come from a seeded generator. Families, labels and bucket edges follow vLLM's
`vllm/v1/metrics/loggers.py` (docs/sources.md, "vLLM metrics"; the default-on V1 families; flag-gated
ones such as speculative decoding, LoRA, MFU and KV-block residency are left out, as on a plain deployment).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ("realistic_vllm_page",)

MODEL_NAME = "meta-llama/Llama-3.1-8B-Instruct"
MAX_MODEL_LEN = 32768
CREATED_AT = 1_767_225_600.0  # 2026-01-01T00:00:00Z, fixed so the page is byte-identical on every call

TTFT_BUCKETS: tuple[float, ...] = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0),
    *(2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
)
ITL_BUCKETS: tuple[float, ...] = (
    *(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0),
    *(2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0),
)
REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    *(0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0),
    *(50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
)
ITERATION_TOKENS_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
PARAMS_N_BUCKETS = (1, 2, 5, 10, 20)
NUM_PREEMPTIONS_BUCKETS = (1, 2, 3, 4, 5, 10, 20)


def _one_two_five_buckets(limit: int) -> tuple[int, ...]:
    """vLLM's `build_1_2_5_buckets(max_model_len)`: 1, 2, 5, 10, 20, 50, ... up to the limit."""
    edges: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            edge = mantissa * 10**exponent
            if edge > limit:
                return tuple(edges)
            edges.append(edge)
        exponent += 1


TOKEN_COUNT_BUCKETS = _one_two_five_buckets(MAX_MODEL_LEN)

GAUGES = (
    ("vllm:num_requests_running", "Number of requests in model execution batches."),
    ("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
    ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."),
)
COUNTERS = (
    ("vllm:num_preemptions", "Cumulative number of preemption from the engine."),
    ("vllm:prompt_tokens", "Number of prefill tokens processed."),
    ("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external)."),
    ("vllm:generation_tokens", "Number of generation tokens processed."),
    ("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."),
    ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."),
    ("vllm:external_prefix_cache_queries", "External prefix cache queries from KV connector, in tokens."),
    ("vllm:external_prefix_cache_hits", "External prefix cache hits from KV connector, in tokens."),
    ("vllm:mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items."),
    ("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."),
)
HISTOGRAMS: tuple[tuple[str, str, Sequence[float]], ...] = (
    ("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_TOKENS_BUCKETS),
    ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", TOKEN_COUNT_BUCKETS),
    ("vllm:request_generation_tokens", "Number of generation tokens processed.", TOKEN_COUNT_BUCKETS),
    (
        "vllm:request_max_num_generation_tokens",
        "Histogram of maximum number of requested generation tokens.",
        TOKEN_COUNT_BUCKETS,
    ),
    ("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", TOKEN_COUNT_BUCKETS),
    ("vllm:request_params_n", "Histogram of the n request parameter.", PARAMS_N_BUCKETS),
    (
        "vllm:request_prefill_kv_computed_tokens",
        "Histogram of new KV tokens computed during prefill.",
        TOKEN_COUNT_BUCKETS,
    ),
    ("vllm:request_num_preemptions", "Number of preemptions per finished request.", NUM_PREEMPTIONS_BUCKETS),
    ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS),
    ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS),
    (
        "vllm:request_time_per_output_token_seconds",
        "Histogram of time_per_output_token_seconds per request.",
        ITL_BUCKETS,
    ),
    ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_LATENCY_BUCKETS),
    (
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    (
        "vllm:request_inference_time_seconds",
        "Histogram of time spent in RUNNING phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    (
        "vllm:request_prefill_time_seconds",
        "Histogram of time spent in PREFILL phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    (
        "vllm:request_decode_time_seconds",
        "Histogram of time spent in DECODE phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
)
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
PROMPT_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")
WAITING_REASONS = ("capacity", "deferred")
SLEEP_STATES = ("awake", "weights_offloaded", "discard_all")


class _FixedCollector:
    """Hands a prepared list of families to `generate_latest`, which is how the page gets real formatting."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def _histogram(rng: random.Random, name: str, doc: str, edges: Sequence[float], ranks: int) -> Metric:
    family = Metric(name, doc, "histogram")
    for rank in range(ranks):
        labels = {"engine": str(rank), "model_name": MODEL_NAME}
        observations = rng.randint(500, 50_000)
        cumulative = 0
        for edge in edges:
            cumulative += rng.randint(0, (observations - cumulative) // 3)
            family.add_sample(f"{name}_bucket", {**labels, "le": str(float(edge))}, float(cumulative))
        family.add_sample(f"{name}_bucket", {**labels, "le": "+Inf"}, float(observations))
        family.add_sample(f"{name}_count", labels, float(observations))
        family.add_sample(f"{name}_sum", labels, round(observations * float(edges[len(edges) // 3]) * 0.7, 6))
        family.add_sample(f"{name}_created", labels, CREATED_AT + rank * 0.013)
    return family


def _vllm_families(rng: random.Random, ranks: int) -> list[Metric]:
    families: list[Metric] = []
    engine_labels = [("engine", str(rank)) for rank in range(ranks)]

    cache_config = GaugeMetricFamily("vllm:cache_config_info", "Information of the LLMEngine CacheConfig")
    for _, rank_text in engine_labels:
        labels = {
            "block_size": "16",
            "cache_dtype": "auto",
            "calculate_kv_scales": "False",
            "cpu_offload_gb": "0",
            "enable_prefix_caching": "True",
            "engine": rank_text,
            "gpu_memory_utilization": "0.9",
            "is_attention_free": "False",
            "kv_cache_memory_bytes": "None",
            "num_cpu_blocks": "None",
            "num_gpu_blocks": "29127",
            "num_gpu_blocks_override": "None",
            "prefix_caching_hash_algo": "sha256",
            "sliding_window": "None",
            "swap_space_bytes": "4294967296",
        }
        cache_config.add_sample(cache_config.name, labels, 1.0)
    families.append(cache_config)

    for name, doc in GAUGES:
        gauge = GaugeMetricFamily(name, doc, labels=["engine", "model_name"])
        for _, rank_text in engine_labels:
            gauge.add_metric([rank_text, MODEL_NAME], float(rng.randint(0, 64)) if "perc" not in name else rng.random())
        families.append(gauge)

    waiting = GaugeMetricFamily("vllm:num_requests_waiting_by_reason", "Number of requests waiting, by reason.")
    sleep = GaugeMetricFamily("vllm:engine_sleep_state", "Engine sleep state; awake = 0 means engine is sleeping.")
    for _, rank_text in engine_labels:
        for reason in WAITING_REASONS:
            labels = {"engine": rank_text, "model_name": MODEL_NAME, "reason": reason}
            waiting.add_sample(waiting.name, labels, float(rng.randint(0, 12)))
        for state in SLEEP_STATES:
            labels = {"engine": rank_text, "model_name": MODEL_NAME, "sleep_state": state}
            sleep.add_sample(sleep.name, labels, 1.0 if state == "awake" else 0.0)
    families += [waiting, sleep]

    for name, doc in COUNTERS:
        counter = CounterMetricFamily(name, doc, labels=["engine", "model_name"])
        for rank, (_, rank_text) in enumerate(engine_labels):
            counter.add_metric([rank_text, MODEL_NAME], float(rng.randint(0, 10**8)), created=CREATED_AT + rank)
        families.append(counter)

    by_source = CounterMetricFamily(
        "vllm:prompt_tokens_by_source", "Number of prompt tokens by source.", labels=["engine", "model_name", "source"]
    )
    success = CounterMetricFamily(
        "vllm:request_success",
        "Count of successfully processed requests.",
        labels=["engine", "finished_reason", "model_name"],
    )
    for rank, (_, rank_text) in enumerate(engine_labels):
        for source in PROMPT_SOURCES:
            by_source.add_metric(
                [rank_text, MODEL_NAME, source], float(rng.randint(0, 10**8)), created=CREATED_AT + rank
            )
        for reason in FINISHED_REASONS:
            success.add_metric([rank_text, reason, MODEL_NAME], float(rng.randint(0, 10**5)), created=CREATED_AT + rank)
    families += [by_source, success]

    families.extend(_histogram(rng, name, doc, edges, ranks) for name, doc, edges in HISTOGRAMS)
    return families


def _process_families() -> list[Metric]:
    """The default collectors of `prometheus_client` that every vLLM server also exposes."""
    families: list[Metric] = []
    gc_objects = CounterMetricFamily(
        "python_gc_objects_collected", "Objects collected during gc", labels=["generation"]
    )
    gc_uncollectable = CounterMetricFamily(
        "python_gc_objects_uncollectable", "Uncollectable objects found during GC", labels=["generation"]
    )
    gc_collections = CounterMetricFamily(
        "python_gc_collections", "Number of times this generation was collected", labels=["generation"]
    )
    for generation, (collections, collected, uncollectable) in enumerate(((412, 9021, 0), (37, 1875, 0), (4, 412, 0))):
        gc_objects.add_metric([str(generation)], float(collected))
        gc_uncollectable.add_metric([str(generation)], float(uncollectable))
        gc_collections.add_metric([str(generation)], float(collections))
    python_info = GaugeMetricFamily("python_info", "Python platform information")
    python_info.add_sample(
        "python_info",
        {"implementation": "CPython", "major": "3", "minor": "12", "patchlevel": "11", "version": "3.12.11"},
        1.0,
    )
    families += [gc_objects, gc_uncollectable, gc_collections, python_info]
    for name, doc, value in (
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", 6.5309437952e10),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", 3.127296e09),
        ("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", 1.76722551934e09),
        ("process_open_fds", "Number of open file descriptors.", 87.0),
        ("process_max_fds", "Maximum number of open file descriptors.", 1.048576e06),
    ):
        gauge = GaugeMetricFamily(name, doc)
        gauge.add_metric([], value)
        families.append(gauge)
    cpu = CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds.")
    cpu.add_metric([], 5123.37)
    families.append(cpu)
    return families


def realistic_vllm_page(ranks: int = 8) -> str:
    """One vLLM V1 server page: one model, `ranks` data-parallel engine cores, every default-on family."""
    rng = random.Random(20260101)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FixedCollector(_process_families() + _vllm_families(rng, ranks)))
    return generate_latest(registry).decode("utf-8")
