"""SGLang metrics as `python/sglang/srt/metrics/collector.py` records them (@00ae9c15, 2026).

SGLang always serves `/metrics` through `prometheus_client`'s multiprocess collector, so the
page has sorted labels, `_sum` before the buckets and no `_created` series (the 2024 sample in
`tests/fixtures/metrics` shows exactly this). Two profiles:

* `current` — the 2026 collector: scheduler gauges and counters labelled `engine_type`,
  `model_name`, `moe_ep_rank`, `pp_rank`, `tp_rank`; request (tokenizer) metrics labelled
  `model_name`; `inter_token_latency_seconds`, `queue_time_seconds`,
  `num_retracted_requests_total`, `realtime_tokens_total{mode}`, 2026 bucket edges.
* `old` — late 2024 (`sglang-docs-2024-llama31-8b-loaded.prom`): `model_name` only,
  `time_per_output_token_seconds`, the 2024 bucket edges seen in that sample, and
  `func_latency_seconds{name}` (edges `0.05 * 1.5**k`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.simulator.exposition import Histogram, MultiprocessPage, edges

if TYPE_CHECKING:
    from performance_agent.simulator.load_model import ModelGauges, SimRequest
    from performance_agent.simulator.pages import PageContext
    from performance_agent.simulator.shape import LatencyShaper

__all__ = ("SGLANG_VERSIONS", "SglangRank", "render_sglang", "sglang_server_info")

SGLANG_VERSIONS = {"current": "0.5.6", "old": "0.3.6"}

TTFT_EDGES = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
ITL_EDGES = edges(
    "0.002 0.004 0.006 0.008 0.010 0.015 0.020 0.025 0.030 0.035 0.040 0.060 0.080 0.100 0.200 0.400 "
    "0.600 0.800 1.0 2.0 4.0 6.0 8.0"
)
E2E_EDGES = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400)
QUEUE_EDGES = edges(
    "0.0 0.1 0.2 0.5 1 2 3 4 5 10 15 20 30 40 50 60 70 80 90 100 200 300 400 500 600 700 800 900 "
    "1000 1200 1400 1600 1800 2000 2500 3000"
)
RETRACTION_EDGES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 75, 100)
OLD_TTFT_EDGES = edges(
    "0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25 0.5 0.75 1.0 2.5 5.0 7.5 10.0 15.0 20.0 25.0 30.0"
)
OLD_E2E_EDGES = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
OLD_TPOT_EDGES = edges("0.005 0.01 0.015 0.02 0.025 0.03 0.04 0.05 0.075 0.1 0.15 0.2 0.3 0.4 0.5 0.75 1.0 2.5")


def _func_latency_edges() -> tuple[float, ...]:
    """`0.05 * 1.5**k` (the 2024 sample's `0.1125`, not the `0.11250000000000002` of repeated products)."""
    return tuple(0.05 * 1.5**k for k in range(18))


_HELP = {
    "sglang:num_running_reqs": "The number of running requests.",
    "sglang:num_queue_reqs": "The number of requests in the waiting queue.",
    "sglang:num_used_tokens": "The number of used tokens.",
    "sglang:max_total_num_tokens": "Maximum total number of tokens in the KV cache pool.",
    "sglang:token_usage": "The token usage.",
    "sglang:gen_throughput": "The generation throughput (token/s).",
    "sglang:cache_hit_rate": "The prefix cache hit rate.",
    "sglang:num_retracted_reqs": "The number of retracted requests.",
    "sglang:num_retracted_requests": "Total number of retracted requests due to kvcache full.",
    "sglang:realtime_tokens": "Total number of tokens processed (updated on each log interval).",
    "sglang:prompt_tokens": "Number of prefill tokens processed.",
    "sglang:generation_tokens": "Number of generation tokens processed.",
    "sglang:cached_tokens": "Number of cached prompt tokens.",
    "sglang:num_requests": "Number of requests processed.",
    "sglang:num_aborted_requests": "Number of requests aborted.",
    "sglang:time_to_first_token_seconds": "Histogram of time to first token in seconds.",
    "sglang:inter_token_latency_seconds": "Histogram of inter-token latency in seconds.",
    "sglang:e2e_request_latency_seconds": "Histogram of End-to-end request latency in seconds",
    "sglang:queue_time_seconds": "Histogram of queueing time in seconds.",
    "sglang:num_retractions": "Histogram of the number of times a request was retracted.",
}
_OLD_HELP = {
    "sglang:num_running_reqs": "The number of running requests",
    "sglang:num_queue_reqs": "The number of requests in the waiting queue",
    "sglang:num_used_tokens": "The number of used tokens",
    "sglang:token_usage": "The token usage",
    "sglang:gen_throughput": "The generate throughput (token/s)",
    "sglang:cache_hit_rate": "The cache hit rate",
    "sglang:time_per_output_token_seconds": "Histogram of time per output token in seconds.",
    "sglang:func_latency_seconds": "Function latency in seconds",
}


@dataclass(slots=True)
class SglangRank:
    """TP rank 0's scheduler counters plus the tokenizer's per-request histograms."""

    old: bool
    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    carry: float = 0.0
    shaper: LatencyShaper | None = None

    def __post_init__(self) -> None:
        if self.old:
            edges: dict[str, tuple[float, ...]] = {
                "sglang:time_to_first_token_seconds": OLD_TTFT_EDGES,
                "sglang:e2e_request_latency_seconds": OLD_E2E_EDGES,
                "sglang:time_per_output_token_seconds": OLD_TPOT_EDGES,
                "sglang:func_latency_seconds": _func_latency_edges(),
            }
        else:
            edges = {
                "sglang:time_to_first_token_seconds": TTFT_EDGES,
                "sglang:inter_token_latency_seconds": ITL_EDGES,
                "sglang:e2e_request_latency_seconds": E2E_EDGES,
                "sglang:queue_time_seconds": QUEUE_EDGES,
                "sglang:num_retractions": RETRACTION_EDGES,
            }
        self.histograms = {name: Histogram(tuple(float(e) for e in values)) for name, values in edges.items()}

    def _add(self, name: str, amount: float) -> None:
        self.counters[name] = self.counters.get(name, 0.0) + amount

    def on_arrival(self, request: SimRequest) -> None:
        if self.old:
            self.histograms["sglang:func_latency_seconds"].observe(0.0003)

    def on_rejected(self, request: SimRequest, reason: str) -> None:
        self._add("sglang:num_aborted_requests", 1)

    def on_admitted(self, request: SimRequest, now: float, batch_was_busy: bool) -> None:
        if not self.old and request.preemptions == 0:
            self.histograms["sglang:queue_time_seconds"].observe(request.span(request.arrival, now))

    def on_first_token(self, request: SimRequest) -> None:
        self.histograms["sglang:time_to_first_token_seconds"].observe(
            request.span(request.arrival, request.first_token_at)
        )
        self._add("mode:prefill_compute", request.prompt - request.cached)
        self._add("mode:prefill_cache", request.cached)

    def on_steps(self, n_decode: int, prefill_tokens: float, step_s: float, steps: float) -> None:
        if n_decode:
            name = "sglang:time_per_output_token_seconds" if self.old else "sglang:inter_token_latency_seconds"
            self.histograms[name].observe_weighted(step_s, n_decode * steps, self.shaper)
            self.carry += n_decode * steps
            whole = int(self.carry + 1e-9)
            self.carry -= whole
            self._add("mode:decode", whole)

    def on_preempted(self, request: SimRequest) -> None:
        self._add("sglang:num_retracted_requests", 1)

    def on_finished(self, request: SimRequest) -> None:
        self.histograms["sglang:e2e_request_latency_seconds"].observe(
            request.span(request.arrival, request.finished_at)
        )
        if not self.old:
            self.histograms["sglang:num_retractions"].observe(request.preemptions)
        self._add("sglang:prompt_tokens", request.prompt)
        self._add("sglang:generation_tokens", request.generated)
        self._add("sglang:cached_tokens", request.cached)
        self._add("sglang:num_requests", 1)


def render_sglang(ctx: PageContext, ranks: list[tuple[SglangRank, ModelGauges]]) -> str:
    rank, gauges = ranks[0]
    page, old = MultiprocessPage(), rank.old
    request_labels = {"model_name": ctx.model_name}
    if old:
        scheduler_labels = request_labels
    else:
        scheduler_labels = {
            "engine_type": "unified",
            "model_name": ctx.model_name,
            "moe_ep_rank": "0",
            "pp_rank": "0",
            "tp_rank": "0",
        }
    helps = _HELP | _OLD_HELP if old else _HELP
    value = rank.counters.get
    usage = gauges.kv_used_tokens / gauges.kv_capacity_tokens if gauges.kv_capacity_tokens else 0.0
    for name in ("sglang:prompt_tokens", "sglang:generation_tokens"):
        page.counter(name, helps[name], request_labels, value(name, 0.0))
    gauge_values = {
        "sglang:num_running_reqs": gauges.running,
        "sglang:num_queue_reqs": gauges.waiting,
        "sglang:num_used_tokens": gauges.kv_used_tokens,
        "sglang:token_usage": round(min(usage, 1.0), 2),
        "sglang:gen_throughput": gauges.generation_tokens_per_s,
        "sglang:cache_hit_rate": gauges.recent_cache_hit_rate,
    }
    if not old:
        gauge_values |= {
            "sglang:max_total_num_tokens": gauges.kv_capacity_tokens,
            "sglang:num_retracted_reqs": gauges.recent_preemptions,
        }
    for name, number in gauge_values.items():
        page.gauge(name, helps[name], scheduler_labels, number)
    if not old:
        for name in ("sglang:cached_tokens", "sglang:num_requests", "sglang:num_aborted_requests"):
            page.counter(name, helps[name], request_labels, value(name, 0.0))
        page.counter(
            "sglang:num_retracted_requests",
            helps["sglang:num_retracted_requests"],
            scheduler_labels,
            value("sglang:num_retracted_requests", 0.0),
        )
        for mode in ("prefill_compute", "prefill_cache", "decode"):
            page.counter(
                "sglang:realtime_tokens",
                helps["sglang:realtime_tokens"],
                {**scheduler_labels, "mode": mode},
                value("mode:" + mode, 0.0),
            )
    for name, hist in rank.histograms.items():
        if name == "sglang:func_latency_seconds":
            page.histogram(name, helps[name], {"name": "generate_request"}, hist)
        elif name in ("sglang:queue_time_seconds", "sglang:num_retractions"):
            page.histogram(name, helps[name], scheduler_labels, hist)
        else:
            page.histogram(name, helps[name], request_labels, hist)
    return page.text()


def sglang_server_info(ctx: PageContext) -> dict[str, object]:
    """`GET /get_server_info`: the server args (snake_case) plus what the scheduler derived."""
    info: dict[str, object] = {"model_path": ctx.model_name, "served_model_name": ctx.model_name}
    info |= {key: value for key, value in ctx.flags.items() if key != "served_model_name"}
    info |= {
        "max_total_num_tokens": ctx.params.kv_capacity_tokens,
        "max_running_requests": ctx.params.max_running,
        "chunked_prefill_size": ctx.params.token_budget,
        "version": ctx.engine_version,
    }
    return info
