"""Goodput: the share of requests that meet the instance's latency targets, read from histogram buckets.

A histogram knows exactly how many observations fell at or below each of its edges and nothing
in between. So the share meeting a target `t` is exact when `t` is an edge; otherwise the count
at the largest edge at or below `t` is a lower bound of the share (every request counted there
met `t`) and the count at the smallest edge at or above `t` an upper bound. No interpolation:
a goodput that is reported as met must have been met.

Several targets (TTFT and e2e) must hold for the same request, and the histograms are separate,
so which requests fail which target is unknown. The joint share is bounded from below by the
Fréchet (Bonferroni) inequality: P(A₁ ∩ … ∩ Aₖ) ≥ 1 - Σ(1 - P(Aᵢ)), clipped at 0, using the lower
bound of each share. It equals the true share when the failing requests are different requests
for each target and understates it when the same slow requests fail several targets (the
common case: a request with a slow TTFT usually has a slow e2e too).

Inter-token latency is observed per output token, not per request: its share is the share of
*tokens* whose gap met the target. It is reported, marked `per_token`, but left out of the
joint request share, which a token share cannot bound without knowing tokens per request.

Pure: no I/O. Sources: Prometheus histogram semantics (`le` buckets are cumulative upper
bounds); the DistServe paper (Zhong et al., OSDI 2024) for goodput as the share of requests
meeting every latency SLO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from performance_agent.fleet.slo import SloTargets
    from performance_agent.metrics.snapshot import CumulativeHistogram

__all__ = ("Goodput", "LatencyTarget", "ShareBounds", "TargetShare", "goodput", "goodput_targets", "share_within")


@dataclass(frozen=True, slots=True)
class LatencyTarget:
    """One latency objective as goodput reads it: which histogram, which limit in seconds."""

    objective: str
    histogram: str
    limit_s: float
    per_token: bool = False


class TargetShare(msgspec.Struct, kw_only=True):
    """The share of observations at or below one target's limit, as far as the buckets tell.

    `share` is exact when `exact` (the limit is a bucket edge) and otherwise a lower bound, read
    at `edge_s` (the largest edge at or below the limit; null when no edge is, and `share` is
    then 0, the trivial bound). `share_upper` is read at the smallest edge at or above the limit.
    `per_token` marks a token-level histogram (ITL), whose share counts tokens, not requests.
    """

    objective: str
    histogram: str
    limit_s: float
    share: float
    share_upper: float
    exact: bool
    edge_s: float | None
    observations: float
    per_token: bool = False


class Goodput(msgspec.Struct, kw_only=True):
    """Share of requests meeting every request-level latency target (`share`), with its inputs.

    `share` is exact only when a single request-level target was judged at a bucket edge
    (`exact`); otherwise it is a lower bound (Fréchet: 1 - Σ(1 - shareᵢ), clipped at 0). Null
    when no request-level target has its histogram. `targets` lists every judged target,
    including token-level ones that do not enter `share`; `missing` the targets whose histogram
    the window lacks (they do not enter `share` either).
    """

    share: float | None
    exact: bool
    targets: list[TargetShare]
    missing: list[str] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ShareBounds:
    """Bounds of the share of observations at or below a limit; `edge_s` is where `lower` was read."""

    lower: float
    upper: float
    exact: bool
    edge_s: float | None
    observations: float


def share_within(histogram: CumulativeHistogram, limit_s: float) -> ShareBounds | None:
    """Bounds of the share of observations ≤ `limit_s`, read at the edges around it.

    None when the histogram observed nothing. Cumulative counts are taken as read (edges sorted,
    the last one `+Inf`); the total is the `+Inf` count.
    """
    buckets = sorted(histogram.buckets, key=lambda bucket: bucket[0])
    if not buckets or buckets[-1][0] != math.inf:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    below_edge: float | None = None
    below_count = 0.0
    above_count = total
    for edge, count in buckets:
        if edge <= limit_s:
            below_edge, below_count = edge, count
        if edge >= limit_s:
            above_count = count
            break
    lower = min(max(below_count / total, 0.0), 1.0)
    upper = min(max(above_count / total, lower), 1.0)
    return ShareBounds(lower, upper, below_edge == limit_s, below_edge, total)


def goodput(histograms: Mapping[str, CumulativeHistogram], targets: Sequence[LatencyTarget]) -> Goodput | None:
    """Goodput of one window's bucket increases against `targets`; None when no target has its histogram."""
    shares: list[TargetShare] = []
    missing: list[str] = []
    for target in targets:
        histogram = histograms.get(target.histogram)
        found = share_within(histogram, target.limit_s) if histogram is not None else None
        if found is None:
            missing.append(target.objective)
            continue
        shares.append(
            TargetShare(
                objective=target.objective,
                histogram=target.histogram,
                limit_s=target.limit_s,
                share=found.lower,
                share_upper=found.upper,
                exact=found.exact,
                edge_s=found.edge_s,
                observations=found.observations,
                per_token=target.per_token,
            )
        )
    if not shares:
        return None
    per_request = [share for share in shares if not share.per_token]
    if not per_request:
        return Goodput(share=None, exact=False, targets=shares, missing=missing)
    joint = max(0.0, 1.0 - math.fsum(1.0 - share.share for share in per_request))
    exact = len(per_request) == 1 and per_request[0].exact
    return Goodput(share=joint, exact=exact, targets=shares, missing=missing)


def goodput_targets(targets: SloTargets) -> tuple[LatencyTarget, ...]:
    """The per-request latency limits goodput judges: the p99 objectives of TTFT, e2e and ITL.

    Why the p99 targets: a p99 target is the limit almost every request must meet, so a request
    above it is a bad request. `ttft_p95_s` is a stricter limit that 5% of requests may exceed,
    not a per-request limit; counting it too would also charge one slow TTFT twice in the joint
    bound. ITL is observed per token (`per_token`), so it is reported but not part of the
    request share (see `metrics.goodput`).
    """
    return (
        LatencyTarget("ttft_p99_s", "ttft_s", targets.ttft_p99_s),
        LatencyTarget("e2e_p99_s", "e2e_s", targets.e2e_p99_s),
        LatencyTarget("itl_p99_s", "itl_s", targets.itl_p99_s, per_token=True),
    )
