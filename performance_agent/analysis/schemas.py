"""Shapes that analysis produces and consumes: window figures, findings, SLO targets and reports.

Kept free of behaviour so that the analyze controller, storage and the planner can share them
without importing the detectors or the SLO math.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from performance_agent.metrics import builder
from performance_agent.metrics.goodput import Goodput

__all__ = (
    "BOTTLENECK_TYPES",
    "OPTIMIZATION_TYPES",
    "SEVERITY_RANK",
    "AlertEvaluation",
    "AlertEvent",
    "AlertState",
    "BottleneckType",
    "BurnRate",
    "DetectionReport",
    "EvidenceItem",
    "Finding",
    "NotEvaluated",
    "ObjectiveReport",
    "OptimizationType",
    "Severity",
    "SloReport",
    "WindowFigures",
)

Severity = Literal["low", "medium", "high", "critical"]
BottleneckType = Literal[
    "kv_cache_pressure", "queueing", "prefill_latency", "decode_latency", "underutilization", "request_errors"
]
OptimizationType = Literal["kv_cache", "quantization", "batching"]

BOTTLENECK_TYPES: tuple[BottleneckType, ...] = (
    "kv_cache_pressure",
    "queueing",
    "prefill_latency",
    "decode_latency",
    "underutilization",
    "request_errors",
)
OPTIMIZATION_TYPES: tuple[OptimizationType, ...] = ("kv_cache", "quantization", "batching")
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class WindowFigures(builder.AggregateFigures, kw_only=True):
    """The window builder's figures of one instance, plus what analysis needs to place and judge them.

    One idea, not two: the figures themselves (summed histogram and counter deltas) are the
    builder's; `analysis.window` is the single place that adds the engine, the end time and
    the number of scrapes. Detectors read only this, so they can be fed from stored history,
    from a single snapshot, or from hand-made numbers in tests. Gauges (`load.*`) are means
    over the window's scrapes. `ended_at` is needed only by the SLO math, which places
    windows on a time line.
    """

    engine: str
    samples: int = 1
    ended_at: datetime | None = None


class EvidenceItem(msgspec.Struct, kw_only=True):
    """One number behind a finding and the threshold it was compared with."""

    observed: float
    threshold: float
    comparison: Literal[">=", "<=", "<", ">"]
    approximation: str | None = None


class Finding(msgspec.Struct, kw_only=True):
    type: BottleneckType
    severity: Severity
    evidence: dict[str, EvidenceItem]
    description: str
    recommendation: list[OptimizationType]


class NotEvaluated(msgspec.Struct, kw_only=True):
    """A detector that could not run, so the absence of its finding is not mistaken for health."""

    detector: BottleneckType
    reason: str


class DetectionReport(msgspec.Struct, kw_only=True):
    findings: list[Finding] = msgspec.field(default_factory=list)
    not_evaluated: list[NotEvaluated] = msgspec.field(default_factory=list)


class BurnRate(msgspec.Struct, kw_only=True):
    """Burn rate of one lookback (bad fraction / allowed bad fraction), or why it is missing."""

    lookback_s: float
    value: float | None
    reason: str | None = None


class ObjectiveReport(msgspec.Struct, kw_only=True):
    objective: str
    target: float
    comparison: Literal["<=", ">="]
    current: float | None
    compliance: float | None
    good_windows: int
    bad_windows: int
    windows_without_data: int
    error_budget_remaining: float | None
    period_coverage: float
    burn_rates: dict[str, BurnRate]
    reason: str | None = None


class SloReport(msgspec.Struct, kw_only=True):
    evaluated_at: datetime
    target_ratio: float
    period_s: float
    window_start: datetime | None
    objectives: list[ObjectiveReport]
    #: Share of the current window's requests meeting the latency targets (`metrics.goodput`); null
    #: when the window has no histogram for any of them or is a single scrape's own window.
    goodput: Goodput | None = None


class AlertState(msgspec.Struct, kw_only=True):
    """The stored state of one burn-rate alert: one instance, one objective, one window pair."""

    instance_id: str
    objective: str
    pair: str
    state: Literal["firing", "resolved"]
    started_at: datetime
    ended_at: datetime | None = None
    factor: float
    burn_rate_long: float | None = None
    burn_rate_short: float | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    fingerprint: str = ""


class AlertEvent(msgspec.Struct, kw_only=True):
    kind: Literal["fire", "resolve"]
    at: datetime
    alert: AlertState


class AlertEvaluation(msgspec.Struct, kw_only=True):
    states: list[AlertState]
    events: list[AlertEvent]
