"""The normalized snapshot every other part of the agent reads (the contract of issue 3, item 4).

Field names are a public API contract: analysis, optimization, workflows and outside clients
rely on them. Units: durations in seconds (`_s`), ratios as fractions 0..1, rates per second.
A figure the server does not expose is `None` (JSON `null`), never 0.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from performance_agent.metrics.goodput import Goodput
from performance_agent.readings.series import Approximation, ConfigValue, CumulativeHistogram, RawSeries

# Approximation, ConfigValue, CumulativeHistogram and RawSeries are defined in readings/series.py
# (engine adapters produce them); they are part of the snapshot's shape, so they are named here too.
__all__ = (
    "Approximation",
    "ConfigValue",
    "CumulativeHistogram",
    "Errors",
    "InstanceSnapshot",
    "Latency",
    "Load",
    "Quantiles",
    "RawSeries",
    "Throughput",
)


class Quantiles(msgspec.Struct, kw_only=True):
    """Quantiles of one latency histogram over the snapshot's window (PromQL histogram_quantile)."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    count: float | None = None


class Latency(msgspec.Struct, kw_only=True):
    ttft_s: Quantiles = msgspec.field(default_factory=Quantiles)
    itl_s: Quantiles = msgspec.field(default_factory=Quantiles)
    e2e_s: Quantiles = msgspec.field(default_factory=Quantiles)
    queue_s: Quantiles = msgspec.field(default_factory=Quantiles)


class Throughput(msgspec.Struct, kw_only=True):
    requests_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None


class Load(msgspec.Struct, kw_only=True):
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage: float | None = None
    prefix_cache_hit_rate: float | None = None
    preemptions_per_s: float | None = None


class Errors(msgspec.Struct, kw_only=True):
    requests_failed_per_s: float | None = None
    error_rate: float | None = None


class InvalidFigure(msgspec.Struct, kw_only=True):
    """A figure the page's numbers made impossible (a negative rate, KV usage above 1): dropped, shown here.

    Why not keep it: a detector or a rollout gate reading a negative throughput or a cache 130% full
    would draw a confident conclusion from a broken exporter.
    """

    field: str
    value: float
    reason: str


class InstanceSnapshot(msgspec.Struct, kw_only=True):
    instance_id: str
    engine: str
    endpoint: str
    collected_at: datetime
    model_name: str | None = None
    window_s: float | None = None
    latency: Latency = msgspec.field(default_factory=Latency)
    throughput: Throughput = msgspec.field(default_factory=Throughput)
    load: Load = msgspec.field(default_factory=Load)
    errors: Errors = msgspec.field(default_factory=Errors)
    engine_config: dict[str, ConfigValue] = msgspec.field(default_factory=dict)
    engine_version: str | None = None
    approximations: list[Approximation] = msgspec.field(default_factory=list)
    #: Share of the window's requests meeting the instance's own latency targets (null: no targets or no histogram).
    goodput: Goodput | None = None
    invalid: list[InvalidFigure] = msgspec.field(default_factory=list)
    models: list[InstanceSnapshot] = msgspec.field(default_factory=list)
