"""OpenAPI examples of the analysis endpoints, computed by the real detectors and SLO math.

Why computed: an example typed by hand drifts from the code; these are produced from one
hand-made window (a vLLM instance whose KV pool is nearly full) by the same functions the
service calls, then turned into JSON builtins, so they are true by construction.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from performance_agent.analysis.alerts import evaluate_alerts
from performance_agent.analysis.api import (
    AnalysisResponse,
    AnalysisWindow,
    figures_view,
    slo_analysis,
)
from performance_agent.analysis.detectors import detect_bottlenecks, summarize
from performance_agent.analysis.schemas import WindowFigures
from performance_agent.analysis.slo import evaluate_slo
from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.goodput import goodput, goodput_targets
from performance_agent.metrics.snapshot import CumulativeHistogram, Errors, Latency, Load, Quantiles, Throughput

__all__ = (
    "EXAMPLE_END",
    "alerts_example",
    "analysis_example",
    "analyze_request_example",
    "example_figures",
)

EXAMPLE_END = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_SCRAPE_S = 15.0


def example_figures(
    *, ended_at: datetime = EXAMPLE_END, window_s: float = 900.0, pressure: bool = True
) -> WindowFigures:
    """A busy vLLM window; with `pressure` its KV pool is 95% full and it preempts."""
    return WindowFigures(
        engine="vllm",
        window_s=window_s,
        instances=1,
        latency=Latency(
            ttft_s=Quantiles(p50=0.21, p90=0.62, p95=0.9, p99=1.6, mean=0.34, count=4210),
            itl_s=Quantiles(p50=0.028, p90=0.041, p95=0.047, p99=0.066, mean=0.031, count=1077000),
            e2e_s=Quantiles(p50=7.9, p90=14.2, p95=17.5, p99=26.0, mean=8.6, count=4180),
            queue_s=Quantiles(p50=0.0, p90=0.12, p95=0.31, p99=1.1, mean=0.06, count=4210),
        ),
        throughput=Throughput(requests_per_s=4.64, prompt_tokens_per_s=2376.0, generation_tokens_per_s=1188.0),
        load=Load(
            requests_running=38.5,
            requests_waiting=0.4,
            kv_cache_usage=0.95 if pressure else 0.42,
            prefix_cache_hit_rate=0.31,
            preemptions_per_s=0.05 if pressure else 0.0,
        ),
        errors=Errors(requests_failed_per_s=0.0, error_rate=0.0),
        samples=int(window_s // _SCRAPE_S) + 1,
        ended_at=ended_at,
    )


def _timeline(slow: bool) -> list[WindowFigures]:
    """Six hours of 15 s scrape windows; with `slow`, the last ten minutes miss the TTFT target."""
    windows = []
    count = int(6 * 3600 // _SCRAPE_S)
    for index in range(count):
        ended = EXAMPLE_END - timedelta(seconds=_SCRAPE_S * (count - 1 - index))
        figures = example_figures(ended_at=ended, window_s=_SCRAPE_S)
        if slow and EXAMPLE_END - ended < timedelta(minutes=10):
            figures.latency.ttft_s = Quantiles(p50=1.2, p90=2.9, p95=3.6, p99=4.8, mean=1.5, count=70)
        windows.append(figures)
    return windows


def analyze_request_example() -> dict[str, Any]:
    return {"instance_id": "vllm-llama-0", "window_minutes": 15, "slo": {"ttft_p99_s": 2.5}}


#: Bucket increases consistent with `example_figures` (vLLM's edges near the targets), for goodput.
_EXAMPLE_HISTOGRAMS = {
    "ttft_s": CumulativeHistogram(
        buckets=[(0.5, 3705.0), (1.0, 4000.0), (2.5, 4195.0), (math.inf, 4210.0)], sum=1431.4, count=4210.0
    ),
    "e2e_s": CumulativeHistogram(
        buckets=[(20.0, 4100.0), (30.0, 4170.0), (math.inf, 4180.0)], sum=35948.0, count=4180.0
    ),
    "itl_s": CumulativeHistogram(
        buckets=[(0.05, 1040000.0), (0.1, 1075000.0), (math.inf, 1077000.0)], sum=33387.0, count=1077000.0
    ),
}


def analysis_example() -> dict[str, Any]:
    figures = example_figures()
    detection = detect_bottlenecks(figures)
    targets = SloTargets(ttft_p99_s=2.5)
    figures.goodput = goodput(_EXAMPLE_HISTOGRAMS, goodput_targets(targets))
    report = evaluate_slo(
        _timeline(slow=False), targets, compliance_window_s=900.0, period_s=168 * 3600.0, current=figures
    )
    response = AnalysisResponse(
        instance_id="vllm-llama-0",
        engine="vllm",
        analyzed_at=EXAMPLE_END,
        window=AnalysisWindow(
            minutes=15,
            start=EXAMPLE_END - timedelta(seconds=900),
            end=EXAMPLE_END,
            duration_s=900.0,
            scrapes=figures.samples,
            source="history",
            model_name=None,
            collected_now=False,
            figures=figures_view(figures),
            not_evaluated=detection.not_evaluated,
        ),
        bottlenecks=detection.findings,
        slo=slo_analysis(report, targets, "request"),
        summary=summarize(detection),
    )
    return msgspec.to_builtins(response)  # type: ignore[no-any-return]


def alerts_example() -> list[dict[str, Any]]:
    report = evaluate_slo(_timeline(slow=True), SloTargets(), compliance_window_s=21600.0, period_s=21600.0)
    fired = evaluate_alerts("vllm-llama-0", report, [], EXAMPLE_END)
    return [msgspec.to_builtins(event.alert) for event in fired.events]
