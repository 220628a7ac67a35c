"""vLLM (V1 engine) metrics as `vllm/v1/metrics/loggers.py` records and exposes them.

Names, types, labels and bucket edges are copied from vLLM's `loggers.py` (~0.8, ~0.10, ~0.12) and
`docs/usage/metrics.md` (2026) as listed in docs/sources.md (never from the agent's adapters). Three version profiles:

* `current` — the newest families in vLLM's 2026 docs (`kv_cache_usage_perc`,
  `inter_token_latency_seconds`, per-request TPOT, `num_requests_waiting_by_reason`,
  `prompt_tokens_by_source`, `request_num_preemptions`, `engine_sleep_state`), `engine` label.
* `0.10` — the transition release: the deprecated `gpu_cache_usage_perc` and
  `gpu_prefix_cache_*` are still emitted beside the new names, ITL is still
  `time_per_output_token_seconds`, `engine` label present.
* `old` — V1 ~0.8 (the `vllm-prodstack318` sample): only `model_name`, `gpu_cache_usage_perc`,
  prefix-cache counters in *blocks*, `time_per_output_token_seconds`, cudagraph-size
  `iteration_tokens_total` buckets (the start of that sequence is seen in the aibrix sample;
  its end, 512, is vLLM's default largest capture size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.simulator.exposition import Histogram, PythonClientPage, edges

if TYPE_CHECKING:
    from performance_agent.simulator.load_model import ModelGauges, SimRequest
    from performance_agent.simulator.pages import PageContext
    from performance_agent.simulator.shape import LatencyShaper

__all__ = ("VLLM_PROFILES", "VllmProfile", "VllmRank", "render_vllm")

TTFT_EDGES = edges(
    "0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25 0.5 0.75 1.0 2.5 5.0 7.5 10.0 20.0 40.0 80.0 160.0 640.0 2560.0"
)
ITL_EDGES = edges("0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.4 0.5 0.75 1.0 2.5 5.0 7.5 10.0 20.0 40.0 80.0")
LATENCY_EDGES = edges(
    "0.3 0.5 0.8 1.0 1.5 2.0 2.5 5.0 10.0 15.0 20.0 30.0 40.0 50.0 60.0 120.0 240.0 480.0 960.0 1920.0 7680.0"
)
ITERATION_EDGES = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
CUDAGRAPH_EDGES = (1, 2, 4, *range(8, 513, 8))
PARAMS_N_EDGES = (1, 2, 5, 10, 20)
PREEMPTION_EDGES = (1, 2, 3, 4, 5, 10, 20)


def build_1_2_5_buckets(max_value: int) -> tuple[int, ...]:
    """vLLM's `build_1_2_5_buckets(max_model_len)`: 1, 2, 5, 10, 20, 50, ... not above the limit."""
    out: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(out)
            out.append(value)
        exponent += 1


@dataclass(frozen=True, slots=True)
class VllmProfile:
    version: str
    engine_label: bool
    kv_gauges: tuple[str, ...]
    itl_name: str
    prefix_families: tuple[tuple[str, str, bool], ...]  # (queries, hits, counted in blocks)
    request_tpot: bool
    newest: bool
    failure_reason: str
    reasons: tuple[str, ...]
    iteration_edges: tuple[float, ...]


VLLM_PROFILES: dict[str, VllmProfile] = {
    "current": VllmProfile(
        "0.30.0",
        True,
        ("vllm:kv_cache_usage_perc",),
        "vllm:inter_token_latency_seconds",
        (("vllm:prefix_cache_queries", "vllm:prefix_cache_hits", False),),
        True,
        True,
        "error",
        ("stop", "length", "abort", "error"),
        ITERATION_EDGES,
    ),
    "0.10": VllmProfile(
        "0.10.0",
        True,
        ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"),
        "vllm:time_per_output_token_seconds",
        (
            ("vllm:gpu_prefix_cache_queries", "vllm:gpu_prefix_cache_hits", False),
            ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits", False),
        ),
        False,
        False,
        "abort",
        ("stop", "length", "abort"),
        ITERATION_EDGES,
    ),
    "old": VllmProfile(
        "0.8.5",
        False,
        ("vllm:gpu_cache_usage_perc",),
        "vllm:time_per_output_token_seconds",
        (("vllm:gpu_prefix_cache_queries", "vllm:gpu_prefix_cache_hits", True),),
        False,
        False,
        "abort",
        ("stop", "length", "abort"),
        CUDAGRAPH_EDGES,
    ),
}

_HELP = {
    "vllm:num_requests_running": "Number of requests in model execution batches.",
    "vllm:num_requests_waiting": "Number of requests waiting to be processed.",
    "vllm:num_requests_waiting_by_reason": "Number of requests waiting to be processed, by reason.",
    "vllm:kv_cache_usage_perc": "KV-cache usage. 1 means 100 percent usage.",
    "vllm:gpu_cache_usage_perc": "GPU KV-cache usage. 1 means 100 percent usage.",
    "vllm:engine_sleep_state": "Engine sleep state; awake = 0 means engine is sleeping.",
    "vllm:cache_config_info": "Information of the LLMEngine CacheConfig",
    "vllm:num_preemptions": "Cumulative number of preemption from the engine.",
    "vllm:prompt_tokens": "Number of prefill tokens processed.",
    "vllm:prompt_tokens_by_source": "Number of prompt tokens by source.",
    "vllm:prompt_tokens_cached": "Number of cached prompt tokens (local + external).",
    "vllm:generation_tokens": "Number of generation tokens processed.",
    "vllm:request_success": "Count of successfully processed requests.",
    "vllm:prefix_cache_queries": "Prefix cache queries, in terms of number of queried tokens.",
    "vllm:prefix_cache_hits": "Prefix cache hits, in terms of number of cached tokens.",
    "vllm:time_to_first_token_seconds": "Histogram of time to first token in seconds.",
    "vllm:inter_token_latency_seconds": "Histogram of inter-token latency in seconds.",
    "vllm:time_per_output_token_seconds": "Histogram of time per output token in seconds.",
    "vllm:request_time_per_output_token_seconds": "Histogram of time_per_output_token_seconds per request.",
    "vllm:e2e_request_latency_seconds": "Histogram of e2e request latency in seconds.",
    "vllm:request_queue_time_seconds": "Histogram of time spent in WAITING phase for request.",
    "vllm:request_inference_time_seconds": "Histogram of time spent in RUNNING phase for request.",
    "vllm:request_prefill_time_seconds": "Histogram of time spent in PREFILL phase for request.",
    "vllm:request_decode_time_seconds": "Histogram of time spent in DECODE phase for request.",
    "vllm:request_prompt_tokens": "Number of prefill tokens processed.",
    "vllm:request_generation_tokens": "Number of generation tokens processed.",
    "vllm:request_max_num_generation_tokens": "Histogram of maximum number of requested generation tokens.",
    "vllm:request_params_max_tokens": "Histogram of the max_tokens request parameter.",
    "vllm:request_params_n": "Histogram of the n request parameter.",
    "vllm:iteration_tokens_total": "Histogram of number of tokens per engine_step.",
    "vllm:request_prefill_kv_computed_tokens": "Histogram of new KV tokens computed during prefill.",
    "vllm:request_num_preemptions": "Histogram of the number of preemptions per finished request.",
}
_DEPRECATED = {
    "vllm:gpu_prefix_cache_queries": "vllm:prefix_cache_queries",
    "vllm:gpu_prefix_cache_hits": "vllm:prefix_cache_hits",
}
_LATENCY_FAMILIES = (
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_inference_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
)
_TOKEN_FAMILIES = (
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
    "vllm:request_max_num_generation_tokens",
    "vllm:request_params_max_tokens",
)


@dataclass(slots=True)
class VllmRank:
    """Cumulative counters and histograms of one engine core (one `engine` label value)."""

    profile: VllmProfile
    max_model_len: int
    block_size: int
    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    generation_carry: float = 0.0
    shaper: LatencyShaper | None = None

    def __post_init__(self) -> None:
        p, tokens = self.profile, build_1_2_5_buckets(self.max_model_len)
        edges: dict[str, tuple[float, ...]] = {"vllm:time_to_first_token_seconds": TTFT_EDGES, p.itl_name: ITL_EDGES}
        edges |= dict.fromkeys(_LATENCY_FAMILIES, LATENCY_EDGES) | dict.fromkeys(_TOKEN_FAMILIES, tokens)
        edges |= {"vllm:request_params_n": PARAMS_N_EDGES, "vllm:iteration_tokens_total": p.iteration_edges}
        if p.request_tpot:
            edges["vllm:request_time_per_output_token_seconds"] = ITL_EDGES
        if p.newest:
            edges["vllm:request_prefill_kv_computed_tokens"] = tokens
            edges["vllm:request_num_preemptions"] = PREEMPTION_EDGES
        self.histograms = {name: Histogram(tuple(float(e) for e in values)) for name, values in edges.items()}

    def _add(self, name: str, amount: float) -> None:
        self.counters[name] = self.counters.get(name, 0.0) + amount

    # EventSink -------------------------------------------------------------------------
    def on_arrival(self, request: SimRequest) -> None:
        return None  # vLLM records per-request metrics when a request finishes

    def on_rejected(self, request: SimRequest, reason: str) -> None:
        if reason == "error":
            self._add("reason:" + self.profile.failure_reason, 1)

    def on_admitted(self, request: SimRequest, now: float, batch_was_busy: bool) -> None:
        return None

    def on_first_token(self, request: SimRequest) -> None:
        self.histograms["vllm:time_to_first_token_seconds"].observe(
            request.span(request.arrival, request.first_token_at)
        )
        self._add("vllm:prompt_tokens", request.prompt)
        self._add("vllm:generation_tokens", 1)
        self._add("source:local_compute", request.prompt - request.cached)
        self._add("source:local_cache_hit", request.cached)
        for queries, hits, in_blocks in self.profile.prefix_families:
            block = self.block_size if in_blocks else 1
            self._add(queries, math.ceil(request.prompt / block))
            self._add(hits, request.cached // block)

    def on_steps(self, n_decode: int, prefill_tokens: float, step_s: float, steps: float) -> None:
        if n_decode:
            self.histograms[self.profile.itl_name].observe_weighted(step_s, n_decode * steps, self.shaper)
            self.generation_carry += n_decode * steps
            whole = int(self.generation_carry + 1e-9)
            self.generation_carry -= whole
            self._add("vllm:generation_tokens", whole)
        self.histograms["vllm:iteration_tokens_total"].observe_weighted(n_decode + prefill_tokens, steps)

    def on_preempted(self, request: SimRequest) -> None:
        self._add("vllm:num_preemptions", 1)

    def on_finished(self, request: SimRequest) -> None:
        h, r = self.histograms, request
        decode = r.span(r.first_token_at, r.finished_at)
        values = (
            r.span(r.arrival, r.finished_at),
            r.span(r.arrival, r.admitted_at),
            r.span(r.admitted_at, r.finished_at),
            r.span(r.admitted_at, r.first_token_at),
            decode,
        )
        for name, value in zip(_LATENCY_FAMILIES, values, strict=True):
            h[name].observe(value)
        for name, tokens in zip(_TOKEN_FAMILIES, (r.prompt, r.generated, r.max_tokens, r.max_tokens), strict=True):
            h[name].observe(tokens)
        h["vllm:request_params_n"].observe(1)
        if self.profile.request_tpot and r.generated > 1:
            h["vllm:request_time_per_output_token_seconds"].observe(decode / (r.generated - 1))
        if self.profile.newest:
            h["vllm:request_prefill_kv_computed_tokens"].observe(r.prompt - r.cached)
            h["vllm:request_num_preemptions"].observe(r.preemptions)
        self._add("reason:" + ("length" if r.truncated else "stop"), 1)


def _help(name: str, profile: VllmProfile) -> str:
    """HELP text; in the 0.10 profile the renamed families still ship, marked deprecated."""
    if name.startswith("vllm:gpu_prefix_cache_"):
        kind = name.rsplit("_", 1)[1]
        unit = "blocks" if profile.prefix_families[0][2] else "tokens"
        text = f"GPU prefix cache {kind}, in terms of number of {'queried' if kind == 'queries' else 'cached'} {unit}."
    else:
        text = _HELP[name]
    if len(profile.kv_gauges) > 1 and "gpu_" in name:
        text += f" DEPRECATED: Use {name.replace('gpu_', '', 1).replace('cache_usage', 'kv_cache_usage')} instead."
    return text


def _cache_config_labels(ctx: PageContext, profile: VllmProfile, rank: str | None) -> dict[str, str]:
    """`CacheConfig.metrics_info()`: every field stringified (the field set differs by release)."""
    flags = ctx.flags
    labels = {
        "block_size": str(flags["block_size"]),
        "cache_dtype": str(flags["kv_cache_dtype"]),
        "calculate_kv_scales": "False",
        "cpu_offload_gb": "0",
        "enable_prefix_caching": str(flags["enable_prefix_caching"]),
        "gpu_memory_utilization": str(flags["gpu_memory_utilization"]),
        "is_attention_free": "False",
        "num_cpu_blocks": "0",
        "num_gpu_blocks": str(ctx.params.kv_capacity_tokens // ctx.params.block_size),
        "num_gpu_blocks_override": str(flags["num_gpu_blocks_override"]),
        "sliding_window": "None",
    }
    if profile.newest:
        labels |= {"prefix_caching_hash_algo": "sha256", "kv_cache_memory_bytes": "None", "swap_space": "4"}
    else:
        labels["swap_space_bytes"] = "4294967296"
    if rank is not None:
        labels["engine"] = rank
    return labels


def render_vllm(profile: VllmProfile, ctx: PageContext, ranks: list[tuple[VllmRank, ModelGauges]]) -> str:
    """The whole page: process collector first, then every vLLM family across all engine ranks."""
    page, created = PythonClientPage(), ctx.started_at
    page.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", {}, created)
    page.counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.", {}, ctx.cpu_seconds, None)
    page.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", {}, 6.2e10)
    page.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {}, 3.1e9)
    page.gauge("process_open_fds", "Number of open file descriptors.", {}, 45.0)
    page.gauge("process_max_fds", "Maximum number of open file descriptors.", {}, 1048576.0)
    for index, (rank, gauges) in enumerate(ranks):
        labels = {"model_name": ctx.model_name}
        engine = str(index) if profile.engine_label else None
        if engine is not None:
            labels["engine"] = engine
        page.gauge("vllm:num_requests_running", _help("vllm:num_requests_running", profile), labels, gauges.running)
        page.gauge("vllm:num_requests_waiting", _help("vllm:num_requests_waiting", profile), labels, gauges.waiting)
        if profile.newest:
            name = "vllm:num_requests_waiting_by_reason"
            page.gauge(name, _help(name, profile), {**labels, "reason": "capacity"}, gauges.waiting)
            page.gauge(name, _help(name, profile), {**labels, "reason": "deferred"}, 0)
        usage = gauges.kv_used_tokens / gauges.kv_capacity_tokens if gauges.kv_capacity_tokens else 0.0
        for name in profile.kv_gauges:
            page.gauge(name, _help(name, profile), labels, min(usage, 1.0))
        if profile.newest:
            for state, value in (("awake", 1), ("weights_offloaded", 0), ("discard_all", 0)):
                page.gauge(
                    "vllm:engine_sleep_state",
                    _help("vllm:engine_sleep_state", profile),
                    {**labels, "sleep_state": state},
                    value,
                )
        page.gauge(
            "vllm:cache_config_info",
            _help("vllm:cache_config_info", profile),
            _cache_config_labels(ctx, profile, engine),
            1,
        )
        _render_rank_counters(page, profile, rank, labels, created)
        for name, hist in rank.histograms.items():
            page.histogram(name, _help(name, profile), labels, hist, created)
    return page.text()


def _render_rank_counters(
    page: PythonClientPage, profile: VllmProfile, rank: VllmRank, labels: dict[str, str], created: float
) -> None:
    value = rank.counters.get
    for name in ("vllm:num_preemptions", "vllm:prompt_tokens", "vllm:generation_tokens"):
        page.counter(name, _help(name, profile), labels, value(name, 0.0), created)
    if profile.newest:
        for source, key in (
            ("local_compute", "source:local_compute"),
            ("local_cache_hit", "source:local_cache_hit"),
            ("external_kv_transfer", "source:external"),
        ):
            name = "vllm:prompt_tokens_by_source"
            page.counter(name, _help(name, profile), {**labels, "source": source}, value(key, 0.0), created)
        page.counter(
            "vllm:prompt_tokens_cached",
            _help("vllm:prompt_tokens_cached", profile),
            labels,
            value("source:local_cache_hit", 0.0),
            created,
        )
    for reason in profile.reasons:
        page.counter(
            "vllm:request_success",
            _help("vllm:request_success", profile),
            {**labels, "finished_reason": reason},
            value("reason:" + reason, 0.0),
            created,
        )
    for queries, hits, _blocks in profile.prefix_families:
        page.counter(queries, _help(queries, profile), labels, value(queries, 0.0), created)
        page.counter(hits, _help(hits, profile), labels, value(hits, 0.0), created)
