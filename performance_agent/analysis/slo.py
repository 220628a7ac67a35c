"""SLO compliance, error budget and multi-window burn rates over a time line of scrape windows.

A scrape window is good for an objective when its figure meets the target. Windows are
weighted by their duration, so a window stretched by a missed scrape counts for the time it
covers (with a steady scrape interval this equals the fraction of good windows). Windows
without the figure are neither good nor bad: they are reported, never guessed.
Burn rates follow the SRE workbook's multi-window pairs (1 h with 5 m at 14.4x, 6 h with 30 m
at 6x): burn rate = bad fraction over the lookback / allowed bad fraction (1 - target_ratio).

How much data a burn rate needs: a pair's *short* window must be covered (at least
`min_burn_coverage`, 90 %, of it holds data), because it is what says the burning is happening
now; a *long* window uses whatever data it holds, as PromQL's `rate()` over a range does. So a
new instance in total breach fires its 1h/5m alert once 4 min 30 s of data exist and its 6h/30m
alert after 27 min, not after half an hour and three hours (docs/analysis.md has the timeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from performance_agent.analysis.schemas import BurnRate, ObjectiveReport, SloReport, WindowFigures
from performance_agent.analysis.slo_timeline import OBJECTIVES, Objective, SloTimeline, Tally
from performance_agent.fleet.slo import SloTargets

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = (
    "BURN_RATE_PAIRS",
    "OBJECTIVES",
    "SHORT_WINDOW_COVERAGE",
    "BurnRatePair",
    "Objective",
    "evaluate_slo",
    "evaluate_slo_timeline",
    "format_lookback",
    "parse_slo_targets",
)


@dataclass(frozen=True, slots=True)
class BurnRatePair:
    """An alert fires when both lookbacks burn at least `factor` times the sustainable rate."""

    long_s: float
    short_s: float
    factor: float

    @property
    def name(self) -> str:
        return f"{format_lookback(self.long_s)}/{format_lookback(self.short_s)}"


BURN_RATE_PAIRS: tuple[BurnRatePair, ...] = (
    BurnRatePair(3600.0, 300.0, 14.4),
    BurnRatePair(21600.0, 1800.0, 6.0),
)


#: The share of a pair's short window that must hold data before its burn rate counts (why not 1:
#: scrape jitter would otherwise push a page by a whole scrape interval past the window's length).
SHORT_WINDOW_COVERAGE = 0.9


def format_lookback(seconds: float) -> str:
    """Prometheus-style duration label: 300 -> "5m", 3600 -> "1h"."""
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def parse_slo_targets(data: dict[str, Any] | None) -> SloTargets:
    """Validate targets from a request body or settings; raises msgspec.ValidationError naming the field."""
    return msgspec.convert(data or {}, SloTargets)


def _budget_remaining(tally: Tally, allowed_bad: float) -> float | None:
    """1 = untouched, 0 = spent, negative = overspent; a zero budget is either intact or spent."""
    if tally.observed_s <= 0:
        return None
    if allowed_bad <= 0:
        return 1.0 if tally.bad_s == 0 else 0.0
    return 1.0 - (tally.bad_s / tally.observed_s) / allowed_bad


def _burn_rate(
    timeline: SloTimeline,
    position: int,
    target: float,
    allowed_bad: float,
    lookback_s: float,
    now: datetime,
    min_coverage: float,
) -> BurnRate:
    label = format_lookback(lookback_s)
    if allowed_bad <= 0:
        return BurnRate(lookback_s=lookback_s, value=None, reason="target_ratio 1 leaves no error budget to burn")
    objective = OBJECTIVES[position]
    tally = timeline.tally(position, target, objective.comparison, now - timedelta(seconds=lookback_s))
    if tally.observed_s <= 0:
        return BurnRate(lookback_s=lookback_s, value=None, reason=f"no data for {objective.name} in the last {label}")
    if tally.observed_s < min_coverage * lookback_s:
        return BurnRate(
            lookback_s=lookback_s,
            value=None,
            reason=(
                f"only {tally.observed_s:.0f} s of data in the last {label}; "
                f"a short window's burn rate needs at least {min_coverage:.0%} of it"
            ),
        )
    return BurnRate(lookback_s=lookback_s, value=(tally.bad_s / tally.observed_s) / allowed_bad)


def evaluate_slo(
    windows: Sequence[WindowFigures],
    targets: SloTargets,
    *,
    compliance_window_s: float,
    period_s: float,
    now: datetime | None = None,
    current: WindowFigures | None = None,
    min_burn_coverage: float = SHORT_WINDOW_COVERAGE,
    pairs: Sequence[BurnRatePair] = BURN_RATE_PAIRS,
) -> SloReport:
    """Report every objective: current value, compliance, error budget left and burn rates.

    `min_burn_coverage` applies to the pairs' short windows; long windows need only some data.

    `windows` are per-scrape figures with `ended_at` and `window_s` (others are skipped).
    `current` is the figure set of the whole analysis window (summed deltas); without it the
    latest scrape window stands for "current". `now` defaults to the end of the latest window.
    """
    if now is None:
        usable = [w.ended_at for w in windows if w.ended_at is not None]
        if not usable:
            raise ValueError("now is required when no window carries ended_at")
        now = max(usable)
    return evaluate_slo_timeline(
        SloTimeline.of(windows),
        targets,
        compliance_window_s=compliance_window_s,
        period_s=period_s,
        now=now,
        current=current,
        min_burn_coverage=min_burn_coverage,
        pairs=pairs,
    )


def evaluate_slo_timeline(
    timeline: SloTimeline,
    targets: SloTargets,
    *,
    compliance_window_s: float,
    period_s: float,
    now: datetime,
    current: WindowFigures | None = None,
    min_burn_coverage: float = SHORT_WINDOW_COVERAGE,
    pairs: Sequence[BurnRatePair] = BURN_RATE_PAIRS,
) -> SloReport:
    """`evaluate_slo` over a time line already in columns (windows ending after `now` are ignored)."""
    if compliance_window_s <= 0 or period_s <= 0:
        raise ValueError("compliance_window_s and period_s must be positive")
    if not 0 < min_burn_coverage <= 1:
        raise ValueError("min_burn_coverage must be in (0, 1]")
    timeline = timeline.until(now)
    allowed_bad = 1.0 - targets.target_ratio
    lookbacks = sorted({s for pair in pairs for s in (pair.long_s, pair.short_s)})
    short_windows = {pair.short_s for pair in pairs}
    compliance_since = now - timedelta(seconds=compliance_window_s)
    period_since = now - timedelta(seconds=period_s)
    reports = []
    for position, objective in enumerate(OBJECTIVES):
        target: float | None = getattr(targets, objective.name)
        if target is None:
            continue
        in_window = timeline.tally(position, target, objective.comparison, compliance_since)
        in_period = timeline.tally(position, target, objective.comparison, period_since)
        latest = timeline.value(position, -1) if len(timeline) else None  # stands in without `current`
        current_value = objective.read(current) if current is not None else latest
        reason = None
        if in_period.observed_s <= 0:
            reason = f"no window in the period carries {objective.name}"
        budget = _budget_remaining(in_period, allowed_bad)
        reports.append(
            ObjectiveReport(
                objective=objective.name,
                target=target,
                comparison=objective.comparison,
                current=current_value,
                compliance=in_window.good_s / in_window.observed_s if in_window.observed_s > 0 else None,
                good_windows=in_window.good_windows,
                bad_windows=in_window.bad_windows,
                windows_without_data=in_window.no_data_windows,
                error_budget_remaining=budget,
                period_coverage=min(in_period.observed_s / period_s, 1.0),
                burn_rates={
                    format_lookback(lookback): _burn_rate(
                        timeline,
                        position,
                        target,
                        allowed_bad,
                        lookback,
                        now,
                        min_burn_coverage if lookback in short_windows else 0.0,
                    )
                    for lookback in lookbacks
                },
                reason=reason,
            )
        )
    return SloReport(
        evaluated_at=now,
        target_ratio=targets.target_ratio,
        period_s=period_s,
        window_start=compliance_since,
        objectives=reports,
        goodput=current.goodput if current is not None else None,
    )
