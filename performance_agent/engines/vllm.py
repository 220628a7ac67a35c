"""vLLM's `/metrics` (V0 engine, V1 0.8 through the newest) in engine-neutral terms.

Names move between releases; every concept lists its wire names newest first and the first one
present on the page wins (source: vLLM `vllm/v1/metrics/loggers.py` ~0.8 to ~0.12 and `docs/usage/metrics.md`;
commits in docs/sources.md):
- ITL: `inter_token_latency_seconds` (≥0.11) replaces `time_per_output_token_seconds` (same data);
- KV usage: `kv_cache_usage_perc` (≥0.9) replaces `gpu_cache_usage_perc`;
- prefix cache: `prefix_cache_{queries,hits}` in tokens (≥0.9) replace `gpu_prefix_cache_*`, which
  V1 0.8 counted in blocks; the V0 gauge `gpu_prefix_cache_hit_rate` (-1 = unused) is the last resort.
Failures are the `abort` and `error` children of `request_success_total{finished_reason}`; an
abort includes a client that went away, so `error_rate` counts those too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.engines.base import AdaptedPage, ObjectiveSeries, WireSeries, config_value, number_config
from performance_agent.engines.reader import PageReader
from performance_agent.readings.series import Approximation, ConfigValue

if TYPE_CHECKING:
    from performance_agent.readings.page import MetricsPage

__all__ = ("VllmAdapter",)

_FAILED_REASONS = ("finished_reason", frozenset({"abort", "error"}))

OBJECTIVE_SERIES = ObjectiveSeries(
    ttft_s=(WireSeries("vllm:time_to_first_token_seconds"),),
    itl_s=(WireSeries("vllm:inter_token_latency_seconds"), WireSeries("vllm:time_per_output_token_seconds")),
    e2e_s=(WireSeries("vllm:e2e_request_latency_seconds"),),
    generation_tokens=(WireSeries("vllm:generation_tokens_total"),),
    requests_finished=(WireSeries("vllm:request_success_total"),),
    requests_failed=(WireSeries("vllm:request_success_total", _FAILED_REASONS),),
)


class VllmAdapter:
    """Maps every vLLM generation's names onto the concept keys of `RawSeries`."""

    engine = "vllm"
    objective_series = OBJECTIVE_SERIES
    #: Family-name prefixes `adapt` reads; the scraper's parser skips every other family's samples.
    #: `tests/unit/test_engine_reads.py` checks that adapting with the filter changes nothing.
    reads: tuple[str, ...] = (
        "process_start_time_seconds",
        "vllm:cache_config_info",
        "vllm:lora_requests_info",
        "vllm:generation_tokens",
        "vllm:gpu_cache_usage_perc",
        "vllm:gpu_prefix_cache_",
        "vllm:kv_cache_usage_perc",
        "vllm:num_preemptions",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:prefix_cache_",
        "vllm:prompt_tokens",
        "vllm:request_queue_time_seconds",
        "vllm:request_success",
        "vllm:time_per_output_token_seconds",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
    )

    def adapt(self, page: MetricsPage) -> AdaptedPage:
        reader = PageReader(page, ("model_name",))
        approximations: list[Approximation] = []

        reader.objective_histograms(OBJECTIVE_SERIES)
        reader.histogram("queue_s", "vllm:request_queue_time_seconds")

        if reader.objective_counter("requests_finished", OBJECTIVE_SERIES.requests_finished):
            reader.objective_counter("requests_failed", OBJECTIVE_SERIES.requests_failed)
        reader.counter("prompt_tokens", "vllm:prompt_tokens_total")
        reader.objective_counter("generation_tokens", OBJECTIVE_SERIES.generation_tokens)
        reader.counter("preemptions", "vllm:num_preemptions_total")
        self._prefix_cache(reader, approximations)

        reader.gauge("requests_running", "vllm:num_requests_running")
        reader.gauge("requests_waiting", "vllm:num_requests_waiting")
        kv_usage = reader.present("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
        if kv_usage is not None:
            reader.gauge("kv_cache_usage", kv_usage)

        return reader.result(
            self.engine,
            engine_config=self._engine_config(reader),
            approximations=approximations,
            start_fallback_s=reader.page_value("process_start_time_seconds"),
        )

    @staticmethod
    def _prefix_cache(reader: PageReader, approximations: list[Approximation]) -> None:
        if reader.present("vllm:prefix_cache_queries_total"):
            reader.counter("prefix_cache_queries", "vllm:prefix_cache_queries_total")
            reader.counter("prefix_cache_hits", "vllm:prefix_cache_hits_total")
            return
        if reader.present("vllm:gpu_prefix_cache_queries_total"):
            reader.counter("prefix_cache_queries", "vllm:gpu_prefix_cache_queries_total")
            reader.counter("prefix_cache_hits", "vllm:gpu_prefix_cache_hits_total")
            if "block" in reader.help_text("vllm:gpu_prefix_cache_queries_total"):
                approximations.append(
                    Approximation(
                        field="load.prefix_cache_hit_rate",
                        formula="rate(vllm:gpu_prefix_cache_hits_total) / rate(vllm:gpu_prefix_cache_queries_total),"
                        " counted in KV blocks (vLLM V1 ≤0.8), not tokens",
                    )
                )
            return
        if reader.present("vllm:prompt_tokens_cached_total"):
            reader.counter("prefix_cache_queries", "vllm:prompt_tokens_total")
            reader.counter("prefix_cache_hits", "vllm:prompt_tokens_cached_total")
            approximations.append(
                Approximation(
                    field="load.prefix_cache_hit_rate",
                    formula="rate(vllm:prompt_tokens_cached_total) / rate(vllm:prompt_tokens_total)",
                )
            )
            return
        if reader.gauge("prefix_cache_hit_rate", "vllm:gpu_prefix_cache_hit_rate", minimum=0.0):
            approximations.append(
                Approximation(
                    field="load.prefix_cache_hit_rate",
                    formula="vllm:gpu_prefix_cache_hit_rate (V0 gauge, recent blocks, not the window)",
                )
            )

    @staticmethod
    def _engine_config(reader: PageReader) -> dict[str, ConfigValue]:
        """`cache_config_info` labels (identical on every DP rank: rank 0), LoRA, and how many DP ranks report here."""
        config: dict[str, ConfigValue] = {}
        infos = reader.samples("vllm:cache_config_info")
        if infos:
            chosen = next((labels for _, labels, _ in infos if labels.get("engine") == "0"), infos[0][1])
            for label, text in chosen.items():
                if label not in ("engine", "model_name"):
                    config[label] = config_value(text)
        lora = reader.samples("vllm:lora_requests_info")
        if lora and "max_lora" in lora[0][1]:
            config["max_lora"] = config_value(lora[0][1]["max_lora"])
        ranks = {labels["engine"] for _, labels, _ in reader.samples("vllm:num_requests_running") if "engine" in labels}
        if ranks:
            config["data_parallel_ranks"] = number_config(float(len(ranks)))
        return config
