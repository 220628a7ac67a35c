"""What every engine adapter produces, and the engine-neutral vocabulary they share.

An adapter turns an engine's series into engine-neutral `RawSeries` (cumulative values under
concept keys), per model and for the whole server. It reads `MetricsPage.series` only, so it does
not care whether the samples came from a scrape or, later, from a Prometheus query API. The
shared one-pass reader is `engines/reader.py`.

Concept keys (what a key means is fixed here; which wire names feed it is each adapter's business):
- histograms (seconds): `ttft_s`, `itl_s` (token-weighted), `e2e_s`, `queue_s`; `prefill_s` only
  where an engine lacks `ttft_s` (TGI), so the builder can approximate TTFT as queue + prefill;
- counters: `requests_finished` (every request that ended, successful or not), `requests_failed`
  (the failed or aborted part of those), `prompt_tokens`, `generation_tokens`, `preemptions`
  (vLLM preemptions, SGLang retractions), `prefix_cache_queries` / `prefix_cache_hits` (only the
  ratio is reported, so their unit, tokens or blocks, cancels out);
- gauges: `requests_running`, `requests_waiting`, `kv_cache_usage` (0..1), and
  `prefix_cache_hit_rate` only from engines that expose no prefix-cache counters.
A key is absent when the page does not expose it; absent is unknown, never zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from performance_agent.readings.series import Approximation, ConfigValue, RawSeries

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.readings.page import MetricsPage

__all__ = (
    "COUNTER_KEYS",
    "ENGINE_PREFIXES",
    "GAUGE_COMBINE",
    "HISTOGRAM_KEYS",
    "RANK_ZERO_LABELS",
    "AdaptedPage",
    "EngineAdapter",
    "ObjectiveSeries",
    "WireSeries",
    "combine_gauge",
    "config_value",
    "detect_engine",
    "number_config",
)

HISTOGRAM_KEYS = ("ttft_s", "itl_s", "e2e_s", "queue_s", "prefill_s")
COUNTER_KEYS = (
    "requests_finished",
    "requests_failed",
    "prompt_tokens",
    "generation_tokens",
    "preemptions",
    "prefix_cache_queries",
    "prefix_cache_hits",
)

GaugeRule = Literal["sum", "max", "mean"]

GAUGE_COMBINE: dict[str, GaugeRule] = {
    # Each data-parallel rank (and each model) has its own batch and its own queue.
    "requests_running": "sum",
    "requests_waiting": "sum",
    # Each rank has its own KV pool; the fullest one preempts no matter how empty the others are,
    # so the server's KV pressure is the maximum (the vLLM dashboard's "Max KV usage").
    "kv_cache_usage": "max",
    # A hit ratio of equally sized ranks: the unweighted mean is the best a page allows.
    "prefix_cache_hit_rate": "mean",
}

ENGINE_PREFIXES: dict[str, str] = {"vllm": "vllm:", "sglang": "sglang:", "tgi": "tgi_"}

#: Tensor-, pipeline- and expert-parallel ranks report the same batch: only rank 0 is read.
RANK_ZERO_LABELS = ("tp_rank", "pp_rank", "moe_ep_rank")


@dataclass(frozen=True, slots=True)
class WireSeries:
    """One wire series: a histogram's base name or a counter, optionally only samples whose `label` is in `values`."""

    name: str
    only: tuple[str, frozenset[str]] | None = None


@dataclass(frozen=True, slots=True)
class ObjectiveSeries:
    """The wire series an engine's SLO objectives are computed from, every generation newest first.

    Why a table: the adapter reads these names from pages and the Prometheus rule generator
    writes them into PromQL, so a rename is made once, here in the engine's module. An empty
    tuple means the engine exposes no such series (TGI has no TTFT histogram and no single
    counter of finished requests; the agent approximates those from several series).
    """

    ttft_s: tuple[WireSeries, ...] = ()
    itl_s: tuple[WireSeries, ...] = ()
    e2e_s: tuple[WireSeries, ...] = ()
    generation_tokens: tuple[WireSeries, ...] = ()
    requests_finished: tuple[WireSeries, ...] = ()
    requests_failed: tuple[WireSeries, ...] = ()
    #: Labels whose value must be "0" or absent (rank-0 reading, as the page reader does).
    rank_zero_labels: tuple[str, ...] = ()


class AdaptedPage(msgspec.Struct, kw_only=True):
    """One page in engine-neutral terms: the server total, each named model, and what the page revealed.

    `models` is keyed by model name and holds every named model (also when there is only one);
    samples without a model label count only in `total`.
    """

    engine: str
    total: RawSeries
    models: dict[str, RawSeries] = msgspec.field(default_factory=dict)
    engine_config: dict[str, ConfigValue] = msgspec.field(default_factory=dict)
    engine_version: str | None = None
    approximations: list[Approximation] = msgspec.field(default_factory=list)


class EngineAdapter(Protocol):
    """One engine's knowledge: which series mean what, across the versions it has shipped."""

    @property
    def engine(self) -> str: ...

    @property
    def objective_series(self) -> ObjectiveSeries:
        """The wire series the SLO objectives read (also what Prometheus rules query)."""
        ...

    @property
    def reads(self) -> tuple[str, ...]:
        """Prefixes of the family names `adapt` looks at (others may be skipped by the parser)."""
        ...

    def adapt(self, page: MetricsPage) -> AdaptedPage: ...


def detect_engine(page: MetricsPage) -> str | None:
    """The engine whose metric families dominate the page, so a scrape can report what it really found."""
    tallies = dict.fromkeys(ENGINE_PREFIXES, 0)
    names = set(page.series)
    names.update(page.families)
    for name in names:
        for engine, prefix in ENGINE_PREFIXES.items():
            if name.startswith(prefix):
                tallies[engine] += 1
                break
    engine, count = max(tallies.items(), key=lambda item: item[1])
    return engine if count else None


def config_value(text: str) -> ConfigValue:
    """A label value as the typed setting it clearly is ("16" → 16, "0.9" → 0.9, "True" → True, "None" → None).

    Anything that is not unmistakably a number or a Python literal stays a string, e.g. "auto".
    """
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if text == "None":
        return None
    digits = text[1:] if text[:1] in "+-" else text
    if digits.isdigit():
        return int(text)
    if digits and all(character in "0123456789.eE+-" for character in digits) and any(c.isdigit() for c in digits):
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else text
    return text


def number_config(value: float) -> ConfigValue:
    """A gauge that carries a setting: integral values become ints so they read like the flag."""
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


def combine_gauge(key: str, values: Sequence[float]) -> float | None:
    """Reduce one gauge over ranks, models or instances by the rule its meaning requires."""
    if not values:
        return None
    rule = GAUGE_COMBINE.get(key, "max")
    if rule == "sum":
        return math.fsum(values)
    if rule == "mean":
        return math.fsum(values) / len(values)
    return max(values)
