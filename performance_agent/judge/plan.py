"""What the judge tests, fixed once from the pre-rollout baseline: metrics, edges, margins, threshold.

A guardrail such as `max_ttft_p99_increase = 0.2` means "a canary 20% slower is acceptable". At a
bucket edge e that slowdown moves the share of requests above e from S(e) to S(e / 1.2), so the
tolerated odds ratio at e is psi_e = odds(S(e / 1.2)) / odds(S(e)), with S read from the baseline's
buckets and log-log interpolated between edges. Each edge then asks: does the canary put more
requests above e than a reference 20% slower would? Edges are fixed for the whole workflow, so
the evidence of every window and stage multiplies into one test per metric.

The error budget `alpha` (per workflow) is split once: `AA_ALPHA_SHARE` to the A/A check,
`BASELINE_ALPHA_SHARE` to the confidence bounds on the baseline used when no control remains,
the rest equally over the K judged metrics. K counts every metric the tolerances enable (not the
ones the engine happens to expose), so the threshold K / (alpha * 0.7) is the same for every
workflow with the same guardrails: 200 for the defaults (K = 7).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec

from performance_agent.judge.likelihood import odds, share_of_odds, upper_confidence_bound
from performance_agent.judge.tolerances import (
    AA_ALPHA_SHARE,
    ABSOLUTE_LIMIT_SHARE,
    ALTERNATIVES,
    BASELINE_ALPHA_SHARE,
    LATENCY_GUARDRAILS,
    MAX_EDGE_SHARE,
    MIN_EDGE_COUNT,
    MIN_EDGE_SHARE,
    JudgeSettings,
    MetricKind,
    Tolerances,
)

if TYPE_CHECKING:
    from performance_agent.judge.counts import BucketCounts, CohortCounts

__all__ = ("EdgePlan", "JudgePlan", "MetricPlan", "plan_margins")


class EdgePlan(msgspec.Struct, kw_only=True):
    """One tested edge. `margin` is the tolerated odds ratio against a concurrent reference;
    `baseline_tolerated_share` the tolerated share above the edge when only the baseline remains
    (from the baseline's upper confidence bound, see `plan_margins`)."""

    edge: float
    #: The histogram the edge belongs to (goodput mixes several).
    source: str = ""
    baseline_share: float
    tolerated_share: float
    margin: float
    baseline_tolerated_share: float


class MetricPlan(msgspec.Struct, kw_only=True):
    metric: str
    guardrail: str
    kind: MetricKind
    tolerance: float
    critical: bool = False
    edges: list[EdgePlan] = msgspec.field(default_factory=list)
    #: One-sample null share (absolute limits; error increase against the baseline).
    tolerated_share: float | None = None
    note: str | None = None


class JudgePlan(msgspec.Struct, kw_only=True):
    alpha: float
    metric_count: int
    threshold: float
    alternatives: list[float]
    metrics: list[MetricPlan]
    baseline_requests: float = 0.0

    @property
    def log_threshold(self) -> float:
        return math.log(self.threshold)


def _survival(counts: BucketCounts) -> list[float]:
    return [(counts.total - below) / counts.total for below in counts.counts_le]


def _interpolated_survival(edges: list[float], survival: list[float], point: float) -> float | None:
    """S(point), linear in log S against log latency between the enclosing edges; None below the first."""
    if point < edges[0]:
        return None
    for index in range(1, len(edges)):
        if point <= edges[index]:
            low, high = edges[index - 1], edges[index]
            s_low, s_high = survival[index - 1], survival[index]
            if s_high <= 0 or s_low <= 0:
                return s_high if s_high > 0 else None
            weight = (math.log(point) - math.log(low)) / (math.log(high) - math.log(low))
            return math.exp(math.log(s_low) + weight * (math.log(s_high) - math.log(s_low)))
    return survival[-1]


def _latency_edges(
    source: str, counts: BucketCounts | None, increase: float, delta: float
) -> tuple[list[EdgePlan], str | None]:
    if counts is None or counts.total <= 0:
        return [], "no baseline buckets"
    survival = _survival(counts)
    candidates = []
    for edge, share in zip(counts.edges, survival, strict=True):
        above = share * counts.total
        if not MIN_EDGE_SHARE <= share <= MAX_EDGE_SHARE or min(above, counts.total - above) < MIN_EDGE_COUNT:
            continue
        tolerated = _interpolated_survival(counts.edges, survival, edge / (1.0 + increase))
        if tolerated is None or tolerated >= 1.0:
            continue
        candidates.append((edge, share, max(tolerated, share)))
    plans = []
    for edge, share, tolerated in candidates:
        margin = odds(tolerated) / odds(share)
        above = share * counts.total
        upper = upper_confidence_bound(above, counts.total, delta / len(candidates))
        plans.append(
            EdgePlan(
                edge=edge,
                source=source,
                baseline_share=share,
                tolerated_share=tolerated,
                margin=margin,
                baseline_tolerated_share=min(share_of_odds(margin * odds(min(upper, 0.999))), 0.999),
            )
        )
    return plans, None if plans else "no bucket edge with enough baseline requests on both sides"


def _limit_edge(counts: BucketCounts | None, limit: float) -> float | None:
    """The smallest edge at or above the limit: a share above it over 1% proves the p99 is above the limit."""
    if counts is None:
        return None
    return next((edge for edge in counts.edges if edge >= limit), None)


def _goodput_edge(counts: BucketCounts | None, target: float) -> float | None:
    """The largest edge at or below the SLO target (requests at or below it surely meet the target)."""
    if counts is None:
        return None
    return next((edge for edge in reversed(counts.edges) if edge <= target), None)


#: Count-based metrics: (metric and kind, guardrail, critical).
_COUNT_METRICS: tuple[tuple[MetricKind, str, bool], ...] = (
    ("error_rate", "max_error_rate", True),
    ("error_rate_increase", "max_error_rate_increase", False),
    ("throughput", "max_throughput_decrease", False),
    ("preemptions", "max_preemptions_increase", False),
)


def plan_margins(baseline: CohortCounts, tolerances: Tolerances, settings: JudgeSettings | None = None) -> JudgePlan:
    """The workflow's tests, from the pre-rollout baseline (all instances, before any change)."""
    alpha = (settings or JudgeSettings()).alpha
    metrics: list[MetricPlan] = []
    enabled = _enabled_count(tolerances)
    delta = alpha * BASELINE_ALPHA_SHARE / max(enabled, 1)
    for metric, relative, absolute in LATENCY_GUARDRAILS:
        counts = baseline.histogram(metric)
        increase = getattr(tolerances, relative)
        if increase is not None:
            edges, note = _latency_edges(metric, counts, increase, delta)
            metrics.append(
                MetricPlan(
                    metric=metric, guardrail=relative, kind="latency", tolerance=increase, edges=edges, note=note
                )
            )
        limit = None if absolute is None else getattr(tolerances, absolute)
        if limit is not None:
            edge = _limit_edge(counts, limit)
            plan = MetricPlan(
                metric=f"{metric}_limit",
                guardrail=absolute or "",
                kind="latency_limit",
                tolerance=limit,
                critical=True,
                tolerated_share=ABSOLUTE_LIMIT_SHARE,
                note=None if edge is not None else "no bucket edge at or above the limit",
            )
            if edge is not None:
                plan.edges = [
                    EdgePlan(
                        edge=edge,
                        source=metric,
                        baseline_share=0.0,
                        tolerated_share=ABSOLUTE_LIMIT_SHARE,
                        margin=1.0,
                        baseline_tolerated_share=ABSOLUTE_LIMIT_SHARE,
                    )
                ]
            metrics.append(plan)
    if tolerances.slo_targets_s and tolerances.max_goodput_decrease is not None:
        metrics.append(_goodput_plan(baseline, tolerances.slo_targets_s, tolerances.max_goodput_decrease, delta))
    for kind, guardrail, critical in _COUNT_METRICS:
        tolerance = getattr(tolerances, guardrail)
        if tolerance is None:
            continue
        tolerated = tolerance if kind == "error_rate" else None
        if kind == "error_rate_increase" and baseline.errors is not None and baseline.requests > 0:
            errors = min(baseline.errors, baseline.requests)
            tolerated = min(upper_confidence_bound(errors, baseline.requests, delta) + tolerance, 0.999)
        metrics.append(
            MetricPlan(
                metric=kind,
                guardrail=guardrail,
                kind=kind,
                tolerance=tolerance,
                critical=critical,
                tolerated_share=tolerated,
            )
        )
    return JudgePlan(
        alpha=alpha,
        metric_count=enabled,
        threshold=round(enabled / (alpha * (1.0 - AA_ALPHA_SHARE - BASELINE_ALPHA_SHARE)), 9),
        alternatives=list(ALTERNATIVES),
        metrics=metrics,
        baseline_requests=baseline.requests,
    )


def _goodput_plan(baseline: CohortCounts, slo_targets_s: dict[str, float], decrease: float, delta: float) -> MetricPlan:
    targets = sorted(slo_targets_s.items())
    edges = []
    for metric, target in targets:
        counts = baseline.histogram(metric)
        edge = _goodput_edge(counts, target)
        if counts is None or edge is None or counts.total <= 0:
            continue
        missing = counts.above(edge)
        upper = upper_confidence_bound(missing, counts.total, delta / len(targets))
        edges.append(
            EdgePlan(
                edge=edge,
                source=metric,
                baseline_share=missing / counts.total,
                tolerated_share=min(missing / counts.total + decrease, 0.999),
                margin=1.0,
                baseline_tolerated_share=min(upper + decrease, 0.999),
            )
        )
    note = None if edges else "no SLO target with a bucket edge at or below it in the baseline"
    return MetricPlan(
        metric="goodput", guardrail="max_goodput_decrease", kind="goodput", tolerance=decrease, edges=edges, note=note
    )


def _enabled_count(tolerances: Tolerances) -> int:
    count = sum(getattr(tolerances, relative) is not None for _, relative, _ in LATENCY_GUARDRAILS)
    count += sum(
        absolute is not None and getattr(tolerances, absolute) is not None for _, _, absolute in LATENCY_GUARDRAILS
    )
    count += bool(tolerances.slo_targets_s) and tolerances.max_goodput_decrease is not None
    count += sum(getattr(tolerances, guardrail) is not None for _, guardrail, _ in _COUNT_METRICS)
    return count
