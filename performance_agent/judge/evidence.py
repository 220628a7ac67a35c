"""One window's likelihood ratios per metric and edge: the tables, the nulls, the alternatives.

With a concurrent reference (the control cohort) every question is a conditional one, so that
whatever the traffic split and whatever load did to both cohorts in this window cancels:

* latency edges: canary above e of n1 against reference above e of n0, given the table's
  margins (Fisher's noncentral hypergeometric, null odds ratio = the plan's margin psi_e);
* goodput and error increases (additive tolerances d): the same table with the null odds ratio
  odds(p + d) / odds(p), p the reference's share implied by the window's pooled share at the
  tolerance boundary (a function of the margins, so the conditional test stays exact when the
  canary is no worse; at the boundary itself it is an approximation);
* throughput and preemptions: the canary's part of the pooled requests (per instance) or
  preemptions (per request) is binomial given their sum, as in Lindon & Malek's count tests;
  windows with zero counts simply add no evidence.

Without a reference (100% stage) the baseline cannot be reused as fresh data every window: the
canary's share is tested against a fixed tolerated share set from the baseline's upper confidence
bound at planning time (a one-sample binomial test, valid on the bound's event).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec

from performance_agent.judge.likelihood import binomial_log_ratios, fnch_log_ratios, odds, share_of_odds

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.judge.counts import BucketCounts, CohortCounts
    from performance_agent.judge.plan import EdgePlan, MetricPlan

__all__ = ("EdgeWindow", "edge_key", "metric_window")

# Shares are kept strictly inside (0, 1) so that every logarithm stays finite.
_SHARE_CEILING = 1.0 - 1e-9


class EdgeWindow(msgspec.Struct, kw_only=True):
    """The counts one edge saw in one window and their log likelihood ratio per alternative."""

    key: str
    edge: float | None
    canary_above: float
    canary_total: float
    reference_above: float | None
    reference_total: float | None
    null_odds_ratio: float | None
    null_share: float | None
    log_ratios: list[float]


def _alternative_shares(null: float, alternatives: Sequence[float]) -> list[float]:
    return [min(share_of_odds(odds(null) * factor), _SHARE_CEILING) for factor in alternatives]


def _two_sample(
    key: str,
    edge: float | None,
    canary: tuple[float, float],
    reference: tuple[float, float],
    log_psi: float | None,
    alternatives: Sequence[float],
) -> EdgeWindow:
    a1, n1 = round(canary[0]), round(canary[1])
    a0, n0 = round(reference[0]), round(reference[1])
    if log_psi is None or not math.isfinite(log_psi):
        ratios = [0.0] * len(alternatives)
    else:
        shifted = [log_psi + math.log(factor) for factor in alternatives]
        ratios = fnch_log_ratios(a1, n1, n0, a1 + a0, log_psi, shifted)
    return EdgeWindow(
        key=key,
        edge=edge,
        canary_above=canary[0],
        canary_total=canary[1],
        reference_above=reference[0],
        reference_total=reference[1],
        null_odds_ratio=None if log_psi is None or not math.isfinite(log_psi) else math.exp(log_psi),
        null_share=None,
        log_ratios=ratios,
    )


def _one_sample(
    key: str, edge: float | None, canary: tuple[float, float], null: float | None, alternatives: Sequence[float]
) -> EdgeWindow:
    above, total = canary
    if null is None or total <= 0 or not 0 < null < 1:
        ratios = [0.0] * len(alternatives)
    else:
        ratios = binomial_log_ratios(above, total, null, _alternative_shares(null, alternatives))
    return EdgeWindow(
        key=key,
        edge=edge,
        canary_above=above,
        canary_total=total,
        reference_above=None,
        reference_total=None,
        null_odds_ratio=None,
        null_share=null,
        log_ratios=ratios,
    )


def _above(counts: BucketCounts | None, edge: float) -> tuple[float, float] | None:
    if counts is None or edge not in counts.edges:
        return None
    return counts.above(edge), counts.total


def _additive_log_psi(canary: tuple[float, float], reference: tuple[float, float], increase: float) -> float | None:
    """log odds(p + d) / odds(p), p = the reference share if the pooled share sat at the tolerance boundary."""
    pooled_total = canary[1] + reference[1]
    if pooled_total <= 0:
        return None
    boundary = (canary[0] + reference[0]) / pooled_total - increase * canary[1] / pooled_total
    if boundary <= 0 or boundary + increase >= 1:
        return None
    return math.log(odds(boundary + increase)) - math.log(odds(boundary))


def edge_key(plan: EdgePlan) -> str:
    return f"{plan.source}:{plan.edge!r}"


def _latency(
    plan: MetricPlan,
    canary: CohortCounts,
    reference: CohortCounts | None,
    alternatives: Sequence[float],
) -> list[EdgeWindow]:
    windows = []
    canary_counts = {source: canary.histogram(source) for source in {edge.source for edge in plan.edges}}
    reference_counts = {} if reference is None else {source: reference.histogram(source) for source in canary_counts}
    for edge in plan.edges:
        seen = _above(canary_counts[edge.source], edge.edge)
        if seen is None:
            continue
        key = edge_key(edge)
        if plan.kind == "latency_limit":
            windows.append(_one_sample(key, edge.edge, seen, edge.tolerated_share, alternatives))
        elif reference is None:
            windows.append(_one_sample(key, edge.edge, seen, edge.baseline_tolerated_share, alternatives))
        else:
            other = _above(reference_counts[edge.source], edge.edge)
            if other is None:
                continue
            log_psi = (
                math.log(edge.margin) if plan.kind == "latency" else _additive_log_psi(seen, other, plan.tolerance)
            )
            windows.append(_two_sample(key, edge.edge, seen, other, log_psi, alternatives))
    return windows


def _counts(
    plan: MetricPlan,
    canary: CohortCounts,
    reference: CohortCounts | None,
    alternatives: Sequence[float],
) -> list[EdgeWindow]:
    kind = plan.kind
    if kind == "error_rate" or (kind == "error_rate_increase" and reference is None):
        if canary.errors is None:
            return []
        return [
            _one_sample(
                kind, None, (min(canary.errors, canary.requests), canary.requests), plan.tolerated_share, alternatives
            )
        ]
    if reference is None:
        return []  # throughput and preemptions need a concurrent reference
    if kind == "error_rate_increase":
        if canary.errors is None or reference.errors is None:
            return []
        seen = (min(canary.errors, canary.requests), canary.requests)
        other = (min(reference.errors, reference.requests), reference.requests)
        log_psi = _additive_log_psi(seen, other, plan.tolerance)
        return [_two_sample(kind, None, seen, other, log_psi, alternatives)]
    if kind == "throughput":
        # Per instance-second when both exposures are known, else per instance (equal windows assumed).
        timed = canary.exposure_s is not None and reference.exposure_s is not None
        return [
            _rate_test(
                kind,
                (canary.requests, canary.exposure_s if timed and canary.exposure_s else canary.instances),
                (reference.requests, reference.exposure_s if timed and reference.exposure_s else reference.instances),
                1.0 - plan.tolerance,
                [1.0 / factor for factor in alternatives],
            )
        ]
    if canary.preemptions is None or reference.preemptions is None:
        return []
    return [
        _rate_test(
            kind,
            (canary.preemptions, canary.requests),
            (reference.preemptions, reference.requests),
            1.0 + plan.tolerance,
            list(alternatives),
        )
    ]


def _rate_test(
    key: str, canary: tuple[float, float], reference: tuple[float, float], null_ratio: float, factors: list[float]
) -> EdgeWindow:
    """The canary's part of pooled counts, binomial given their sum when both cohorts are Poisson.

    Under a canary-to-reference rate ratio rho (per unit of exposure), the canary's part is
    rho E1 / (rho E1 + E0); the null is rho = null_ratio, the alternatives null_ratio x factor.
    """
    (count, exposure), (other, other_exposure) = canary, reference
    total = count + other
    if total <= 0 or exposure <= 0 or other_exposure <= 0 or null_ratio <= 0:
        ratios = [0.0] * len(factors)
        null = None
    else:
        null = null_ratio * exposure / (null_ratio * exposure + other_exposure)
        shares = [
            min(null_ratio * f * exposure / (null_ratio * f * exposure + other_exposure), _SHARE_CEILING)
            for f in factors
        ]
        ratios = binomial_log_ratios(count, total, null, shares)
    return EdgeWindow(
        key=key,
        edge=None,
        canary_above=count,
        canary_total=exposure,
        reference_above=other,
        reference_total=other_exposure,
        null_odds_ratio=null_ratio,
        null_share=null,
        log_ratios=ratios,
    )


def metric_window(
    plan: MetricPlan,
    canary: CohortCounts,
    reference: CohortCounts | None,
    alternatives: Sequence[float],
) -> list[EdgeWindow]:
    """This window's evidence for one metric: one entry per edge (or one for a count metric) that had data."""
    if plan.kind in ("latency", "latency_limit", "goodput"):
        return _latency(plan, canary, reference, alternatives)
    return _counts(plan, canary, reference, alternatives)
