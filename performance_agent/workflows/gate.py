"""The health gate: one window's verdict from canary and reference figures, and what the stage does next.

Pure on purpose (no I/O, no clock): the reconciler feeds it figures it already computed with
`metrics.builder.cohort_figures` (quantiles over summed bucket deltas of each cohort), so every
rule here is tested with plain numbers.

Why these rules (Kayenta's critical metrics, the SRE workbook's concurrent control, Flagger's
no-data halt; docs/sources.md, "Rollout design"):
- Absolute SLO guardrails are *critical*: breaching one rolls back at once.
- Relative checks compare the canary with the control cohort under the same traffic; at 100% no
  control remains and the pre-rollout baseline is the reference.
- Missing data is never a pass: too few requests, an unknown value everywhere, or a control that
  cannot be scraped make the window inconclusive. A canary that cannot be scraped counts as
  failed by default (a flag that crashes the server on restart is the commonest bad change).
- Inconclusive windows neither pass nor fail and do not break a failure streak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import msgspec

from performance_agent.workflows.schemas import CohortFigures, MetricCheck, Verdict

if TYPE_CHECKING:
    from collections.abc import Mapping

    from performance_agent.metrics.builder import AggregateFigures
    from performance_agent.workflows.policy import Guardrails, MonitorPolicy

__all__ = (
    "PREEMPTION_NOISE_FLOOR_PER_S",
    "GateResult",
    "StageDecision",
    "StageProgress",
    "cohort_summary",
    "decide_after_window",
    "evaluate_window",
)

#: Below this per-instance preemption rate a relative increase is noise (0 → 0.001/s is "infinitely worse").
PREEMPTION_NOISE_FLOOR_PER_S = 0.01

Step = Literal["rollback", "advance", "pause", "continue"]


def cohort_summary(figures: AggregateFigures) -> CohortFigures:
    """The figures a verdict compares, from a cohort's (or the baseline's) window figures."""
    latency = figures.latency
    # Finished requests, failed ones included (latency histograms often observe successes only).
    requests = None
    if figures.throughput.requests_per_s is not None and figures.window_s is not None:
        requests = round(figures.throughput.requests_per_s * figures.window_s, 6)
    if requests is None:
        requests = latency.e2e_s.count if latency.e2e_s.count is not None else latency.ttft_s.count
    preemptions = figures.load.preemptions_per_s
    rate = figures.throughput.requests_per_s
    return CohortFigures(
        instances=figures.instances,
        requests=requests,
        requests_per_s_per_instance=None if rate is None or figures.instances == 0 else rate / figures.instances,
        ttft_p99_s=latency.ttft_s.p99,
        itl_p99_s=latency.itl_s.p99,
        e2e_p99_s=latency.e2e_s.p99,
        error_rate=figures.errors.error_rate,
        preemptions_per_s_per_instance=None
        if preemptions is None or figures.instances == 0
        else preemptions / figures.instances,
    )


@dataclass(frozen=True, slots=True)
class GateResult:
    verdict: Verdict
    critical: bool
    reasons: list[str]
    checks: list[MetricCheck] = field(default_factory=list)


def _relative(metric: str, canary: float | None, reference: float | None, threshold: float) -> MetricCheck:
    observed = None
    if canary is not None and reference is not None and reference > 0:
        observed = canary / reference - 1.0
    elif canary is not None and reference == 0:
        observed = 0.0 if canary == 0 else None
    return MetricCheck(
        metric=metric,
        kind="relative",
        canary=canary,
        reference=reference,
        threshold=threshold,
        observed=observed,
        passed=None if observed is None else observed <= threshold,
        critical=False,
    )


def _absolute(metric: str, canary: float | None, limit: float) -> MetricCheck:
    return MetricCheck(
        metric=metric,
        kind="absolute",
        canary=canary,
        reference=None,
        threshold=limit,
        observed=canary,
        passed=None if canary is None else canary <= limit,
        critical=True,
    )


def _error_rate_increase(canary: float | None, reference: float | None, threshold: float) -> MetricCheck:
    """Percentage points, not a ratio: 0 → 0.1% errors is not a 'infinite' regression."""
    observed = None if canary is None or reference is None else canary - reference
    return MetricCheck(
        metric="error_rate_increase",
        kind="relative",
        canary=canary,
        reference=reference,
        threshold=threshold,
        observed=observed,
        passed=None if observed is None else observed <= threshold,
        critical=False,
    )


def _preemption_increase(canary: float | None, reference: float | None, threshold: float) -> MetricCheck:
    check = _relative("preemptions_per_s_increase", canary, reference, threshold)
    if canary is not None and reference is not None and canary - reference <= PREEMPTION_NOISE_FLOOR_PER_S:
        observed = check.observed if check.observed is not None else 0.0
        return msgspec.structs.replace(check, observed=observed, passed=True)
    if canary is not None and reference == 0 and canary > PREEMPTION_NOISE_FLOOR_PER_S:
        return msgspec.structs.replace(check, observed=None, passed=False)
    return check


def _throughput_drop(canary: CohortFigures, reference: CohortFigures, threshold: float) -> MetricCheck:
    """A canary that stalls (too few slots, a crash loop that still answers) serves far less than control."""
    canary_rate, reference_rate = canary.requests_per_s_per_instance, reference.requests_per_s_per_instance
    observed = None
    if canary_rate is not None and reference_rate is not None and reference_rate > 0:
        observed = 1.0 - canary_rate / reference_rate
    return MetricCheck(
        metric="requests_per_s_per_instance_decrease",
        kind="relative",
        canary=canary_rate,
        reference=reference_rate,
        threshold=threshold,
        observed=observed,
        passed=None if observed is None else observed <= threshold,
        critical=False,
    )


def _absolute_checks(canary: CohortFigures, rules: Guardrails) -> list[MetricCheck]:
    checks = [_absolute("error_rate", canary.error_rate, rules.max_error_rate)]
    if rules.max_preemptions_per_s is not None:
        checks.append(
            _absolute("preemptions_per_s", canary.preemptions_per_s_per_instance, rules.max_preemptions_per_s)
        )
    for metric, value, limit in (
        ("ttft_p99_s", canary.ttft_p99_s, rules.max_ttft_p99_s),
        ("itl_p99_s", canary.itl_p99_s, rules.max_itl_p99_s),
        ("e2e_p99_s", canary.e2e_p99_s, rules.max_e2e_p99_s),
    ):
        if limit is not None:
            checks.append(_absolute(metric, value, limit))
    return checks


def _relative_checks(canary: CohortFigures, reference: CohortFigures, rules: Guardrails) -> list[MetricCheck]:
    return [
        _throughput_drop(canary, reference, rules.max_throughput_decrease),
        _relative("ttft_p99_s", canary.ttft_p99_s, reference.ttft_p99_s, rules.max_ttft_p99_increase),
        _relative("itl_p99_s", canary.itl_p99_s, reference.itl_p99_s, rules.max_itl_p99_increase),
        _relative("e2e_p99_s", canary.e2e_p99_s, reference.e2e_p99_s, rules.max_e2e_p99_increase),
        _error_rate_increase(canary.error_rate, reference.error_rate, rules.max_error_rate_increase),
        _preemption_increase(
            canary.preemptions_per_s_per_instance,
            reference.preemptions_per_s_per_instance,
            rules.max_preemptions_increase,
        ),
    ]


def _describe(check: MetricCheck) -> str:
    if check.kind == "absolute":
        return f"{check.metric} {check.observed:.4g} is above the limit {check.threshold:g}"
    if check.observed is None:
        return f"{check.metric} rose from {check.reference} to {check.canary}"
    if check.metric.endswith("_decrease"):
        return (
            f"{check.metric}: {check.canary:.4g} vs {check.reference:.4g} "
            f"(-{check.observed:.1%} > {check.threshold:.1%})"
        )
    return f"{check.metric} {check.canary:.4g} vs {check.reference:.4g} (+{check.observed:.1%} > {check.threshold:.1%})"


def _scrape_errors(errors: Mapping[str, str]) -> str:
    return ", ".join(f"{instance_id} ({code})" for instance_id, code in sorted(errors.items()))


def evaluate_window(
    canary: CohortFigures,
    reference: CohortFigures | None,
    rules: Guardrails,
    *,
    canary_errors: Mapping[str, str] | None = None,
    control_errors: Mapping[str, str] | None = None,
    reference_name: str = "control",
) -> GateResult:
    """Verdict of one window. `reference` is the control cohort, or the baseline when no control remains."""
    if canary_errors:
        reason = f"canary scrape failed: {_scrape_errors(canary_errors)}"
        verdict: Verdict = "fail" if rules.on_canary_scrape_error == "fail" else "inconclusive"
        return GateResult(verdict, False, [reason])
    if control_errors:
        return GateResult("inconclusive", False, [f"control scrape failed: {_scrape_errors(control_errors)}"])
    canary_requests = canary.requests or 0.0
    reference_requests = 0.0 if reference is None else reference.requests or 0.0
    if reference is not None and reference_requests >= rules.min_samples and canary_requests < rules.min_samples:
        # Too few canary requests to judge latency, but enough control traffic to see it is starved.
        drop = _throughput_drop(canary, reference, rules.max_throughput_decrease)
        if drop.passed is False:
            return GateResult("fail", False, [_describe(drop)], [drop])
    if canary_requests < rules.min_samples or canary.instances == 0:
        return GateResult(
            "inconclusive",
            False,
            [f"canary served {canary_requests:g} requests, fewer than min_samples {rules.min_samples}"],
        )
    absolute = _absolute_checks(canary, rules)
    breached = [check for check in absolute if check.passed is False]
    if breached:
        return GateResult("fail", True, [f"critical: {_describe(check)}" for check in breached], absolute)
    if reference is None:
        return GateResult("inconclusive", False, [f"no {reference_name} figures to compare with"], absolute)
    if reference_requests < rules.min_samples or reference.instances == 0:
        reason = f"{reference_name} served {reference_requests:g} requests, fewer than min_samples {rules.min_samples}"
        return GateResult("inconclusive", False, [reason], absolute)
    relative = _relative_checks(canary, reference, rules)
    checks = absolute + relative
    failed = [check for check in relative if check.passed is False]
    if failed:
        return GateResult("fail", False, [_describe(check) for check in failed], checks)
    if all(check.passed is None for check in relative if not check.metric.endswith("_decrease")):
        return GateResult("inconclusive", False, [f"no figure is known for both canary and {reference_name}"], checks)
    return GateResult("pass", False, [], checks)


@dataclass(slots=True)
class StageProgress:
    """What the current stage has seen so far; persisted with the workflow (times in epoch seconds)."""

    monitor_started_at: float
    warmup_until: float
    stage_deadline: float
    consecutive_failures: int = 0
    passing_windows: int = 0
    last_verdict: Verdict | None = None
    last_conclusive_at: float | None = None


@dataclass(frozen=True, slots=True)
class StageDecision:
    step: Step
    reason: str | None = None


def decide_after_window(
    progress: StageProgress,
    result: GateResult,
    *,
    now: float,
    rules: Guardrails,
    monitor: MonitorPolicy,
    may_advance: bool,
) -> StageDecision:
    """Count the window into `progress` (mutated) and say what the stage does next.

    `may_advance` is false while a human holds the stage (paused, awaiting approval): guardrails
    still roll back, but the stage neither advances nor pauses by itself.
    """
    if result.verdict == "fail":
        progress.consecutive_failures += 1
        progress.last_conclusive_at = now
    elif result.verdict == "pass":
        progress.consecutive_failures = 0
        progress.passing_windows += 1
        progress.last_conclusive_at = now
    progress.last_verdict = result.verdict
    if result.verdict == "fail" and result.critical:
        return StageDecision("rollback", "guardrail breach: " + "; ".join(result.reasons))
    if progress.consecutive_failures >= rules.consecutive_failures:
        return StageDecision(
            "rollback", f"{progress.consecutive_failures} consecutive failed windows: " + "; ".join(result.reasons)
        )
    if not may_advance:
        return StageDecision("continue")
    if (
        result.verdict == "pass"
        and now >= progress.stage_deadline
        and progress.passing_windows >= monitor.min_passing_windows
    ):
        return StageDecision("advance", f"{progress.passing_windows} passing windows")
    quiet_since = progress.last_conclusive_at if progress.last_conclusive_at is not None else progress.warmup_until
    if result.verdict == "inconclusive" and now - quiet_since >= monitor.inconclusive_timeout_s:
        return StageDecision(
            "pause",
            f"inconclusive for {now - quiet_since:.0f} s (limit {monitor.inconclusive_timeout_s:g} s): "
            + "; ".join(result.reasons),
        )
    return StageDecision("continue")
