"""Request and response bodies of the analyze, SLO and alerts endpoints.

Request Structs forbid unknown fields, and their constraints live in the types, so a negative
latency target is a 422 whose dotted path (`body.slo.ttft_p99_s`) comes from msgspec itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from performance_agent.analysis.schemas import AlertState, Finding, NotEvaluated, SloReport, WindowFigures
from performance_agent.fleet.schemas import INSTANCE_ID_PATTERN
from performance_agent.fleet.slo import SloTargets, SloTargetsUpdate
from performance_agent.metrics.goodput import Goodput
from performance_agent.metrics.snapshot import Approximation, Errors, Latency, Load, Throughput

__all__ = (
    "MAX_WINDOW_MINUTES",
    "AlertList",
    "AnalysisResponse",
    "AnalysisWindow",
    "AnalyzeRequest",
    "SloAnalysis",
    "SloTargetsUpdate",
    "TargetsSource",
    "WindowFiguresView",
    "figures_view",
    "slo_analysis",
)

#: One week: the default history retention, beyond which there is nothing to analyse.
MAX_WINDOW_MINUTES = 7 * 24 * 60

InstanceId = Annotated[str, Meta(pattern=INSTANCE_ID_PATTERN, max_length=128, examples=["vllm-llama-0"])]
TargetsSource = Literal["request", "instance", "defaults"]


class AnalyzeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    instance_id: InstanceId
    window_minutes: Annotated[int, Meta(ge=1, le=MAX_WINDOW_MINUTES)] = 15
    slo: SloTargetsUpdate | None = None
    model_name: Annotated[str, Meta(min_length=1, max_length=256)] | None = None


class WindowFiguresView(msgspec.Struct, kw_only=True):
    """The window's figures: quantiles and rates from summed deltas, gauges as window means."""

    latency: Latency
    throughput: Throughput
    load: Load
    errors: Errors
    approximations: list[Approximation]
    goodput: Goodput | None = None


class AnalysisWindow(msgspec.Struct, kw_only=True):
    """What was analysed.

    `source` is `history` (summed deltas of the stored scrapes in the window) or `single_scrape`
    (only one scrape in the window: its own window, since the scrape before it or since the
    server started, which may reach back before `window_minutes`). `collected_now` is true when
    the instance had no history and was scraped for this analysis. `not_evaluated` lists the
    detectors this window gave no data for, and why.
    """

    minutes: int
    start: datetime | None
    end: datetime | None
    duration_s: float | None
    scrapes: int
    source: Literal["history", "single_scrape"]
    model_name: str | None
    collected_now: bool
    figures: WindowFiguresView
    not_evaluated: list[NotEvaluated]


class SloAnalysis(SloReport, kw_only=True):
    """The SLO report plus the targets it was measured against and where they came from."""

    targets: SloTargets
    targets_source: TargetsSource


class AnalysisResponse(msgspec.Struct, kw_only=True):
    instance_id: str
    engine: str
    analyzed_at: datetime
    window: AnalysisWindow
    bottlenecks: list[Finding]
    slo: SloAnalysis
    summary: str


class AlertList(msgspec.Struct, kw_only=True):
    alerts: list[AlertState]


def figures_view(figures: WindowFigures) -> WindowFiguresView:
    """The response's view of a window's figures (the analysis and its OpenAPI example share it)."""
    return WindowFiguresView(
        latency=figures.latency,
        throughput=figures.throughput,
        load=figures.load,
        errors=figures.errors,
        approximations=figures.approximations,
        goodput=figures.goodput,
    )


def slo_analysis(report: SloReport, targets: SloTargets, source: TargetsSource) -> SloAnalysis:
    """The report with the targets it was measured against and where they came from."""
    return SloAnalysis(
        evaluated_at=report.evaluated_at,
        target_ratio=report.target_ratio,
        period_s=report.period_s,
        window_start=report.window_start,
        objectives=report.objectives,
        goodput=report.goodput,
        targets=targets,
        targets_source=source,
    )
