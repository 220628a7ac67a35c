"""Hugging Face TGI metrics as `router/src/server.rs` and `backends/v3` record them.

From TGI `router/src/server.rs` @db931fcf (after v3.3.7; docs/sources.md): counters have no
`_total` suffix, every `*duration` histogram uses 35 geometric buckets `0.0001 * 1.5^k`
(computed by repeated multiplication, as the router does, so the edges carry its rounding),
token histograms use 100 linear buckets up to `max_input_tokens` / `max_total_tokens`,
`tgi_batch_next_size` uses 1..1024, and `tgi_request_skipped_tokens` has no buckets so the
exporter renders it as a summary. The Rust `metrics` registry only shows a series after its
first use, so labelled counters (`tgi_request_failure{err}`) and histograms appear once
something happened, and all of them vanish on restart. HELP lines are the router's
`describe_*` texts (the first description of a name wins; `tgi_batch_max_total_tokens` has none
because the router describes `tgi_batch_total_tokens` instead). `old` = TGI 2.x (no
`chunking` concat reason); the metric names did not change between 2.x and 3.x.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.simulator.exposition import Histogram, RustExporterPage, Summary

if TYPE_CHECKING:
    from performance_agent.simulator.load_model import ModelGauges, SimRequest
    from performance_agent.simulator.pages import PageContext
    from performance_agent.simulator.shape import LatencyShaper

__all__ = ("TGI_VERSIONS", "TgiRank", "duration_buckets", "render_tgi", "tgi_info")

TGI_VERSIONS = {"current": "3.3.7", "old": "2.4.1"}

DESCRIPTIONS = {
    "tgi_request_success": "Number of successful requests",
    "tgi_request_duration": "Request duration",
    "tgi_request_validation_duration": "Request validation duration",
    "tgi_request_queue_duration": "Request queue duration",
    "tgi_request_inference_duration": "Request inference duration",
    "tgi_request_mean_time_per_token_duration": "Mean time per token per request",
    "tgi_request_generated_tokens": "Generated tokens per request",
    "tgi_batch_inference_count": "Inference calls per method (prefill or decode)",
    "tgi_request_count": "Total number of requests",
    "tgi_batch_inference_success": "Number of successful inference calls per method (prefill or decode)",
    "tgi_batch_current_size": "Current batch size",
    "tgi_queue_size": "Current queue size",
    "tgi_batch_current_max_tokens": "Maximum tokens for the current batch",
    "tgi_batch_total_tokens": "Maximum amount of tokens in total.",
    "tgi_request_max_new_tokens": "Maximum new tokens per request",
    "tgi_batch_inference_duration": "Batch inference duration",
    "tgi_batch_forward_duration": "Batch forward duration per method (prefill or decode)",
    "tgi_request_skipped_tokens": "Speculated tokens per request",
    "tgi_batch_filter_duration": (
        "Time spent filtering batches and sending generated tokens per method (prefill or decode)"
    ),
    "tgi_batch_decode_duration": "Time spent decoding a batch per method (prefill or decode)",
    "tgi_request_input_length": "Input token length per request",
    "tgi_batch_next_size": "Batch size of the next batch",
}

_REQUEST_DURATIONS = (
    "tgi_request_duration",
    "tgi_request_validation_duration",
    "tgi_request_queue_duration",
    "tgi_request_inference_duration",
    "tgi_request_mean_time_per_token_duration",
)
_BATCH_DURATIONS = (
    "tgi_batch_inference_duration",
    "tgi_batch_forward_duration",
    "tgi_batch_decode_duration",
    "tgi_batch_filter_duration",
)


def duration_buckets() -> tuple[float, ...]:
    """The router's loop: `value = 0.0001; 35 times { value *= 1.5; push(value) }`."""
    value, out = 0.0001, []
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return tuple(out)


def _linear(limit: int, count: int = 100) -> tuple[float, ...]:
    return tuple((limit / 100.0) * (x + 1) for x in range(count))


@dataclass(slots=True)
class TgiRank:
    """The router's registry: keyed by (name, labels), created on first use."""

    max_input_tokens: int
    max_total_tokens: int
    max_waiting_s: float
    counters: dict[tuple[str, tuple[tuple[str, str], ...]], int] = field(default_factory=dict)
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], Histogram] = field(default_factory=dict)
    skipped: Summary | None = None
    shaper: LatencyShaper | None = None  # TGI has no per-token latency histogram; batch timings stay unshaped

    def _count(self, name: str, labels: tuple[tuple[str, str], ...] = (), amount: int = 1) -> None:
        self.counters[(name, labels)] = self.counters.get((name, labels), 0) + amount

    def _hist(self, name: str, labels: tuple[tuple[str, str], ...] = ()) -> Histogram:
        hist = self.histograms.get((name, labels))
        if hist is None:
            if name.endswith("duration"):
                edges = duration_buckets()
            elif name == "tgi_request_input_length":
                edges = _linear(self.max_input_tokens)
            elif name == "tgi_batch_next_size":
                edges = tuple(float(x + 1) for x in range(1024))
            else:
                edges = _linear(self.max_total_tokens)
            hist = self.histograms[(name, labels)] = Histogram(edges)
        return hist

    def on_arrival(self, request: SimRequest) -> None:
        self._count("tgi_request_count")
        self._hist("tgi_request_input_length").observe(request.prompt)
        self._hist("tgi_request_max_new_tokens").observe(request.max_tokens)

    def on_rejected(self, request: SimRequest, reason: str) -> None:
        err = {"overloaded": "overloaded", "validation": "validation"}.get(reason, "generation")
        self._count("tgi_request_failure", (("err", err),))

    def on_admitted(self, request: SimRequest, now: float, batch_was_busy: bool) -> None:
        self._hist("tgi_batch_next_size").observe(1)
        if batch_was_busy:
            reason = "wait_exceeded" if now - request.arrival > self.max_waiting_s else "backpressure"
            self._count("tgi_batch_concat", (("reason", reason),))

    def on_first_token(self, request: SimRequest) -> None:
        return None  # TGI has no time-to-first-token metric

    def on_steps(self, n_decode: int, prefill_tokens: float, step_s: float, steps: float) -> None:
        method = "prefill" if prefill_tokens > 0 else "decode"
        labels = (("method", method),)
        before = self._hist("tgi_batch_forward_duration", labels).count
        self._hist("tgi_batch_forward_duration", labels).observe_weighted(step_s * 0.9, steps)
        whole = self._hist("tgi_batch_forward_duration", labels).count - before
        if whole <= 0:
            return
        self._count("tgi_batch_inference_count", labels, whole)
        self._count("tgi_batch_inference_success", labels, whole)
        self._hist("tgi_batch_inference_duration", labels).observe(step_s, whole)
        self._hist("tgi_batch_decode_duration", labels).observe(step_s * 0.06, whole)
        self._hist("tgi_batch_filter_duration", labels).observe(step_s * 0.02, whole)
        if n_decode and method == "decode":
            if self.skipped is None:
                self.skipped = Summary()
            self.skipped.observe(0.0, whole * n_decode)

    def on_preempted(self, request: SimRequest) -> None:
        return None  # TGI reserves the whole budget up front and never preempts

    def on_finished(self, request: SimRequest) -> None:
        r = request
        validation = 0.0002 + r.prompt * 2e-6
        queue, inference = r.span(r.arrival, r.admitted_at), r.span(r.admitted_at, r.finished_at)
        values = (validation + queue + inference, validation, queue, inference, inference / max(r.generated, 1))
        for name, value in zip(_REQUEST_DURATIONS, values, strict=True):
            self._hist(name).observe(value)
        self._hist("tgi_request_generated_tokens").observe(r.generated)
        self._count("tgi_request_success")


def render_tgi(ctx: PageContext, ranks: list[tuple[TgiRank, ModelGauges]]) -> str:
    rank, gauges = ranks[0]
    page = RustExporterPage(DESCRIPTIONS)
    for (name, labels), value in rank.counters.items():
        page.counter(name, labels, value)
    page.gauge("tgi_queue_size", (), gauges.waiting)
    page.gauge("tgi_batch_current_size", (), gauges.running)
    page.gauge("tgi_batch_current_max_tokens", (), gauges.reserved_tokens)
    page.gauge("tgi_batch_max_total_tokens", (), gauges.kv_capacity_tokens)
    for (name, labels), hist in rank.histograms.items():
        page.histogram(name, labels, hist)
    if rank.skipped is not None:
        page.summary("tgi_request_skipped_tokens", (), rank.skipped)
    return page.text()


def tgi_info(ctx: PageContext) -> dict[str, object]:
    """`GET /info` as the router's `Info` struct serializes it."""
    params = ctx.params
    return {
        "model_id": ctx.model_name,
        "model_sha": None,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": params.max_in_system,
        "max_best_of": 2,
        "max_stop_sequences": 4,
        "max_input_tokens": params.max_input_tokens,
        "max_total_tokens": params.max_model_len,
        "validation_workers": 2,
        "max_client_batch_size": 4,
        "router": "text-generation-router",
        "version": ctx.engine_version,
        "sha": None,
        "docker_label": None,
    }
