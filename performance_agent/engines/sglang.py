"""SGLang's `/metrics` (first 2024 release through the 2026 collector) in engine-neutral terms.

Renames handled (the history of SGLang's `python/sglang/srt/metrics/collector.py`, PRs #1853 and
#4444; docs/sources.md): the model label was `name` before `model_name`;
`time_per_output_token_seconds` became `inter_token_latency_seconds` (both token-weighted); the
cumulative gauge `total_retracted_reqs` became the counter `num_retracted_requests_total`.
Scheduler series carry `tp_rank`/`pp_rank`/`moe_ep_rank` (rank 0 is read) and `dp_rank` with DP
attention (summed); `engine_type` and `priority` split nothing we report, so they are summed over.

Requests aborted are `num_aborted_requests_total`; prometheus_client creates its labelled child on
the first abort, so a family declared without samples means zero aborts, and an undeclared one
means unknown. Before `num_requests_total` existed, finished requests are the e2e histogram count.
The older gauge `avg_request_queue_latency` is not used: its unit is not documented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.engines.base import (
    RANK_ZERO_LABELS,
    AdaptedPage,
    ObjectiveSeries,
    WireSeries,
    config_value,
    number_config,
)
from performance_agent.engines.reader import PageReader
from performance_agent.readings.series import Approximation, ConfigValue

if TYPE_CHECKING:
    from performance_agent.readings.page import MetricsPage

__all__ = ("SglangAdapter",)

OBJECTIVE_SERIES = ObjectiveSeries(
    ttft_s=(WireSeries("sglang:time_to_first_token_seconds"),),
    itl_s=(WireSeries("sglang:inter_token_latency_seconds"), WireSeries("sglang:time_per_output_token_seconds")),
    e2e_s=(WireSeries("sglang:e2e_request_latency_seconds"),),
    generation_tokens=(WireSeries("sglang:generation_tokens_total"),),
    requests_finished=(WireSeries("sglang:num_requests_total"),),
    requests_failed=(WireSeries("sglang:num_aborted_requests_total"),),
    rank_zero_labels=RANK_ZERO_LABELS,
)

_CONFIG_GAUGES = {
    "sglang:max_total_num_tokens": "max_total_num_tokens",
    "sglang:max_prefill_tokens": "max_prefill_tokens",
    "sglang:max_running_requests": "max_running_requests",
    "sglang:context_len": "context_len",
}


class SglangAdapter:
    """Maps SGLang's tokenizer and scheduler metrics onto the concept keys of `RawSeries`."""

    engine = "sglang"
    objective_series = OBJECTIVE_SERIES
    #: Family-name prefixes `adapt` reads; the scraper's parser skips every other family's samples.
    #: `tests/unit/test_engine_reads.py` checks that adapting with the filter changes nothing.
    reads: tuple[str, ...] = (
        "process_start_time_seconds",
        "sglang:cache_config_info",
        "sglang:cache_hit_rate",
        "sglang:cached_tokens",
        "sglang:context_len",
        "sglang:e2e_request_latency_seconds",
        "sglang:generation_tokens",
        "sglang:inter_token_latency_seconds",
        "sglang:max_prefill_tokens",
        "sglang:max_running_requests",
        "sglang:max_total_num_tokens",
        "sglang:num_aborted_requests",
        "sglang:num_queue_reqs",
        "sglang:num_requests_total",
        "sglang:num_retracted_requests",
        "sglang:num_running_reqs",
        "sglang:num_used_tokens",
        "sglang:prompt_tokens",
        "sglang:queue_time_seconds",
        "sglang:time_per_output_token_seconds",
        "sglang:time_to_first_token_seconds",
        "sglang:token_usage",
        "sglang:total_retracted_reqs",
    )

    def adapt(self, page: MetricsPage) -> AdaptedPage:
        reader = PageReader(page, ("model_name", "name"))
        approximations: list[Approximation] = []

        reader.objective_histograms(OBJECTIVE_SERIES)
        reader.histogram("queue_s", "sglang:queue_time_seconds")

        self._requests(reader, approximations)
        reader.counter("prompt_tokens", "sglang:prompt_tokens_total")
        reader.objective_counter("generation_tokens", OBJECTIVE_SERIES.generation_tokens)
        preemptions = reader.present("sglang:num_retracted_requests_total", "sglang:total_retracted_reqs")
        if preemptions is not None:
            reader.counter("preemptions", preemptions)
        self._prefix_cache(reader, approximations)

        reader.gauge("requests_running", "sglang:num_running_reqs")
        reader.gauge("requests_waiting", "sglang:num_queue_reqs")
        if not reader.gauge("kv_cache_usage", "sglang:token_usage"):
            self._kv_usage_from_tokens(reader, approximations)

        return reader.result(
            self.engine,
            engine_config=self._engine_config(reader),
            approximations=approximations,
            start_fallback_s=reader.page_value("process_start_time_seconds"),
        )

    @staticmethod
    def _requests(reader: PageReader, approximations: list[Approximation]) -> None:
        if not reader.objective_counter("requests_finished", OBJECTIVE_SERIES.requests_finished) and reader.counter(
            "requests_finished", "sglang:e2e_request_latency_seconds_count"
        ):
            approximations.append(
                Approximation(
                    field="throughput.requests_per_s",
                    formula="rate(sglang:e2e_request_latency_seconds_count) (no sglang:num_requests_total on the page)",
                )
            )
        if reader.objective_counter("requests_failed", OBJECTIVE_SERIES.requests_failed):
            return
        if reader.declared("sglang:num_aborted_requests_total") and reader.has_counter("requests_finished"):
            reader.zero_counter("requests_failed")

    @staticmethod
    def _prefix_cache(reader: PageReader, approximations: list[Approximation]) -> None:
        if reader.present("sglang:cached_tokens_total") and reader.present("sglang:prompt_tokens_total"):
            reader.counter("prefix_cache_hits", "sglang:cached_tokens_total")
            reader.counter("prefix_cache_queries", "sglang:prompt_tokens_total")
            return
        if reader.gauge("prefix_cache_hit_rate", "sglang:cache_hit_rate", minimum=0.0):
            approximations.append(
                Approximation(
                    field="load.prefix_cache_hit_rate",
                    formula="sglang:cache_hit_rate (gauge over recent prefill batches, not the window)",
                )
            )

    @staticmethod
    def _kv_usage_from_tokens(reader: PageReader, approximations: list[Approximation]) -> None:
        capacities = {
            _rank_key(labels): value for _, labels, value in reader.samples("sglang:max_total_num_tokens") if value > 0
        }
        ratios = [
            (model, used / capacity)
            for model, labels, used in reader.samples("sglang:num_used_tokens")
            if (capacity := capacities.get(_rank_key(labels))) is not None
        ]
        if ratios:
            reader.gauge_values("kv_cache_usage", ratios)
            approximations.append(
                Approximation(
                    field="load.kv_cache_usage",
                    formula="sglang:num_used_tokens / sglang:max_total_num_tokens (no sglang:token_usage on the page)",
                )
            )

    @staticmethod
    def _engine_config(reader: PageReader) -> dict[str, ConfigValue]:
        """Per-rank capacities (rank 0's, all ranks are configured alike) and how many DP ranks report."""
        config: dict[str, ConfigValue] = {}
        for name, key in _CONFIG_GAUGES.items():
            samples = reader.samples(name)
            if samples:
                config[key] = number_config(samples[0][2])
        infos = reader.samples("sglang:cache_config_info")
        if infos:
            for label in ("page_size", "num_pages"):
                text = infos[0][1].get(label)
                if text is not None:
                    config[label] = config_value(text)
        ranks = {labels["dp_rank"] for _, labels, _ in reader.samples("sglang:num_running_reqs") if "dp_rank" in labels}
        if ranks:
            config["data_parallel_ranks"] = number_config(float(len(ranks)))
        return config


def _rank_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))
