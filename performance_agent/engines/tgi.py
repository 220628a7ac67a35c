"""Hugging Face TGI's `/metrics` in engine-neutral terms, with its missing signals approximated.

TGI exports through the Rust `metrics` crate: counters carry no `_total` suffix (both spellings
are accepted), there is no model label (one model per server), and a series appears only once it
was first touched. So when one of `tgi_request_success` / `tgi_request_failure` is on the page the
other one being absent means zero, while both absent means unknown.

TGI has no TTFT, token counter, KV usage or prefix-cache metric (TGI `router/src/server.rs` @db931fcf,
after v3.3.7). TTFT is approximated as the official dashboard does: p(queue) + p(prefill batch), computed by
the snapshot builder from the `queue_s` and `prefill_s` histograms. ITL is the model's decode
forward step; KV usage is the tokens the running batch reserved over the KV token capacity
(reserved, not actually used). Each is listed in `approximations`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.engines.base import AdaptedPage, ObjectiveSeries, WireSeries, number_config
from performance_agent.engines.reader import PageReader
from performance_agent.readings.series import Approximation, ConfigValue

if TYPE_CHECKING:
    from performance_agent.readings.page import MetricsPage

__all__ = ("TTFT_APPROXIMATION", "TgiAdapter")

TTFT_APPROXIMATION = Approximation(
    field="latency.ttft_s",
    formula="histogram_quantile(q, tgi_request_queue_duration)"
    ' + histogram_quantile(q, tgi_batch_inference_duration{method="prefill"})'
    " (official TGI dashboard); mean = mean(queue) + mean(prefill batch); count = queued requests",
)
_ITL_APPROXIMATION = Approximation(
    field="latency.itl_s",
    formula='tgi_batch_forward_duration{method="decode"} (one decode forward step = one token per running request)',
)
_KV_APPROXIMATION = Approximation(
    field="load.kv_cache_usage",
    formula="tgi_batch_current_max_tokens / tgi_batch_max_total_tokens (tokens reserved by the batch, not used)",
)
_PROMPT_APPROXIMATION = Approximation(
    field="throughput.prompt_tokens_per_s",
    formula="rate(tgi_request_input_length_sum) (counted at validation, so it includes requests that later fail)",
)
_GENERATION_APPROXIMATION = Approximation(
    field="throughput.generation_tokens_per_s",
    formula="rate(tgi_request_generated_tokens_sum) (counted when a request succeeds)",
)

_PREFILL = ("method", frozenset({"prefill"}))
_DECODE = ("method", frozenset({"decode"}))

#: No TTFT histogram (approximated from two) and no single counter of finished requests (success
#: and failure are separate counters), so those objectives have no series to query directly.
OBJECTIVE_SERIES = ObjectiveSeries(
    itl_s=(WireSeries("tgi_batch_forward_duration", _DECODE),),
    e2e_s=(WireSeries("tgi_request_duration"),),
    generation_tokens=(WireSeries("tgi_request_generated_tokens_sum"),),
)


class TgiAdapter:
    """Maps TGI's router metrics onto the concept keys of `RawSeries`."""

    engine = "tgi"
    objective_series = OBJECTIVE_SERIES
    #: Family-name prefixes `adapt` reads; the scraper's parser skips every other family's samples.
    #: `tests/unit/test_engine_reads.py` checks that adapting with the filter changes nothing.
    reads: tuple[str, ...] = (
        "process_start_time_seconds",
        "tgi_batch_current_max_tokens",
        "tgi_batch_current_size",
        "tgi_batch_forward_duration",
        "tgi_batch_inference_duration",
        "tgi_batch_max_total_tokens",
        "tgi_queue_size",
        "tgi_request_duration",
        "tgi_request_failure",
        "tgi_request_generated_tokens",
        "tgi_request_input_length",
        "tgi_request_queue_duration",
        "tgi_request_success",
    )

    def adapt(self, page: MetricsPage) -> AdaptedPage:
        reader = PageReader(page)
        approximations: list[Approximation] = []

        reader.objective_histograms(OBJECTIVE_SERIES)
        reader.histogram("queue_s", "tgi_request_queue_duration")
        reader.histogram("prefill_s", "tgi_batch_inference_duration", only=_PREFILL)
        if reader.has_histogram("queue_s") and reader.has_histogram("prefill_s"):
            approximations.append(TTFT_APPROXIMATION)
        if reader.has_histogram("itl_s"):
            approximations.append(_ITL_APPROXIMATION)

        self._requests(reader)
        if reader.counter("prompt_tokens", "tgi_request_input_length_sum"):
            approximations.append(_PROMPT_APPROXIMATION)
        if reader.objective_counter("generation_tokens", OBJECTIVE_SERIES.generation_tokens):
            approximations.append(_GENERATION_APPROXIMATION)

        reader.gauge("requests_running", "tgi_batch_current_size")
        reader.gauge("requests_waiting", "tgi_queue_size")
        capacity = reader.page_value("tgi_batch_max_total_tokens")
        reserved = reader.page_value("tgi_batch_current_max_tokens")
        if capacity is not None and capacity > 0 and reserved is not None:
            reader.gauge_values("kv_cache_usage", [(None, reserved / capacity)])
            approximations.append(_KV_APPROXIMATION)

        config: dict[str, ConfigValue] = {}
        if capacity is not None:
            config["max_batch_total_tokens"] = number_config(capacity)
        return reader.result(
            self.engine,
            engine_config=config,
            approximations=approximations,
            start_fallback_s=reader.page_value("process_start_time_seconds"),
        )

    @staticmethod
    def _requests(reader: PageReader) -> None:
        success = reader.present("tgi_request_success", "tgi_request_success_total")
        failure = reader.present("tgi_request_failure", "tgi_request_failure_total")
        if success is None and failure is None:
            return
        if success is not None:
            reader.counter("requests_finished", success)
        if failure is not None:
            reader.counter("requests_finished", failure)
            reader.counter("requests_failed", failure)
        reader.zero_counter("requests_failed")
        reader.zero_counter("requests_finished")
