"""The health gate: one window's verdict from the sequential judge, and what the stage does next.

Pure on purpose (no I/O, no clock): the reconciler feeds it what the judge said about a window
(`performance_agent.judge.judge_window` on the cohorts' bucket counts) or which instances could
not be read, so every rule here is tested with plain numbers.

Why these rules (Kayenta's critical metrics, the SRE workbook's concurrent control, Flagger's
no-data halt: docs/sources.md, "Rollout design"; the statistics are in docs/rollout.md, "How the
judge decides"):
- The verdict of a window is the judge's: `fail` once a metric's running evidence reaches the
  threshold (at once for an absolute limit, which is *critical*), else `pass`. Evidence
  accumulates over windows and stages, so looking every window does not inflate false rollbacks,
  and a sparse window simply adds little evidence: there is no per-window `min_samples` verdict.
- `inconclusive` is kept for windows that could not be read: a control that cannot be scraped,
  or a canary that cannot (when `on_canary_scrape_error` is `inconclusive`). A canary that cannot
  be scraped fails the window by default (a flag that crashes the server on restart is the
  commonest bad change), and `consecutive_failures` such windows in a row roll back: that streak
  is the one thing `consecutive_failures` still counts.
- A stage advances once `duration_s` is over, nothing rolled it back, at least
  `min_passing_windows` windows were judged, and the canary served `judge.min_canary_requests`
  requests pooled over the stage; short of traffic it extends by up to
  `judge.max_stage_extension_s`, then pauses with `insufficient_canary_traffic`
  (`performance_agent.judge.decide_stage`).
- The p99s of `cohort_summary` are display figures (interpolated inside buckets); nothing here
  compares them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from performance_agent.judge import decide_stage
from performance_agent.judge.stage import CRITICAL_GUARDRAIL, INCONCLUSIVE
from performance_agent.workflows.schemas import CohortFigures, MetricCheck, Verdict

if TYPE_CHECKING:
    from collections.abc import Mapping

    from performance_agent.judge import JudgeSettings, WindowJudgement
    from performance_agent.metrics.builder import AggregateFigures
    from performance_agent.workflows.policy import Guardrails, MonitorPolicy

__all__ = (
    "CONSECUTIVE_FAILURES",
    "EVIDENCE_AGAINST_CANARY",
    "GUARDRAIL_BREACH",
    "GateResult",
    "StageDecision",
    "StageProgress",
    "checks_of",
    "cohort_summary",
    "decide_after_window",
    "judged",
    "scrape_failure",
)

#: Code of a rollback after `consecutive_failures` windows whose canary could not be scraped.
CONSECUTIVE_FAILURES = "consecutive_failures"
#: How a rollback's reason starts: an absolute limit breached, or the judge's evidence crossing its threshold.
GUARDRAIL_BREACH = "guardrail breach"
EVIDENCE_AGAINST_CANARY = "evidence against the canary"

Step = Literal["rollback", "advance", "pause", "continue"]


def cohort_summary(figures: AggregateFigures) -> CohortFigures:
    """The display figures of a cohort's (or the baseline's) window; p99s are interpolated inside buckets."""
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
    """A window's verdict; `judgement` is the judge's full evidence (None when the window was not read)."""

    verdict: Verdict
    critical: bool
    reasons: list[str]
    checks: list[MetricCheck] = field(default_factory=list)
    judgement: WindowJudgement | None = None


def _scrape_errors(errors: Mapping[str, str]) -> str:
    return ", ".join(f"{instance_id} ({code})" for instance_id, code in sorted(errors.items()))


def scrape_failure(
    rules: Guardrails, canary_errors: Mapping[str, str], control_errors: Mapping[str, str]
) -> GateResult | None:
    """The verdict of a window some instance of which could not be read; None when all were read."""
    if canary_errors:
        reason = f"canary scrape failed: {_scrape_errors(canary_errors)}"
        verdict: Verdict = "fail" if rules.on_canary_scrape_error == "fail" else "inconclusive"
        return GateResult(verdict, False, [reason])
    if control_errors:
        return GateResult("inconclusive", False, [f"control scrape failed: {_scrape_errors(control_errors)}"])
    return None


def checks_of(judgement: WindowJudgement) -> list[MetricCheck]:
    """One line per judged metric, for readers of the per-window `checks` list.

    Since the sequential judge: `observed` is the metric's running evidence and `threshold` the
    evidence that rolls back; `canary`/`reference` are the shares above the edge carrying the
    most evidence (None for count tests); `passed` is null when the window had no data for it.
    """
    checks = []
    for metric in judgement.metrics:
        worst = max(metric.edges, key=lambda edge: edge.evidence, default=None)
        checks.append(
            MetricCheck(
                metric=metric.metric,
                kind="absolute" if metric.critical else "relative",
                canary=None if worst is None else worst.canary_share,
                reference=None if worst is None else worst.reference_share,
                threshold=metric.threshold,
                observed=metric.evidence,
                passed=None if not metric.judged else not metric.exceeded,
                critical=metric.critical,
            )
        )
    return checks


def judged(judgement: WindowJudgement) -> GateResult:
    """The verdict of a window the judge saw: `fail` when it says roll back, else `pass`."""
    verdict: Verdict = "fail" if judgement.decision == "rollback" else "pass"
    return GateResult(verdict, judgement.critical, list(judgement.reasons), checks_of(judgement), judgement)


@dataclass(slots=True)
class StageProgress:
    """What the current stage has seen so far; persisted with the workflow (times in epoch seconds).

    `canary_requests` are the canary's requests pooled over the stage's judged windows (the floor
    `judge.min_canary_requests` is checked against it); `consecutive_failures` counts windows in a
    row whose canary could not be scraped.
    """

    monitor_started_at: float
    warmup_until: float
    stage_deadline: float
    consecutive_failures: int = 0
    passing_windows: int = 0
    last_verdict: Verdict | None = None
    last_conclusive_at: float | None = None
    canary_requests: float = 0.0


@dataclass(frozen=True, slots=True)
class StageDecision:
    """`code` names why, for machines: `judge_rollback`, `critical_guardrail`, `consecutive_failures`,
    `stage_passed`, `insufficient_canary_traffic`, `inconclusive` (see `performance_agent.judge.stage`)."""

    step: Step
    reason: str | None = None
    code: str | None = None


def decide_after_window(
    progress: StageProgress,
    result: GateResult,
    *,
    now: float,
    rules: Guardrails,
    monitor: MonitorPolicy,
    settings: JudgeSettings,
    may_advance: bool,
) -> StageDecision:
    """Count the window into `progress` (mutated) and say what the stage does next.

    `may_advance` is false while a human holds the stage (paused, awaiting approval): the judge
    still rolls back, but the stage neither advances nor pauses by itself.
    """
    progress.last_verdict = result.verdict
    judgement = result.judgement
    if judgement is None:
        if result.verdict == "fail":
            progress.consecutive_failures += 1
            if progress.consecutive_failures >= rules.consecutive_failures:
                return StageDecision(
                    "rollback",
                    f"{progress.consecutive_failures} consecutive failed windows: " + "; ".join(result.reasons),
                    CONSECUTIVE_FAILURES,
                )
    else:
        progress.consecutive_failures = 0
        progress.canary_requests += judgement.canary_requests
        progress.last_conclusive_at = now
        if result.verdict == "pass":
            progress.passing_windows += 1
    quiet_since = progress.last_conclusive_at if progress.last_conclusive_at is not None else progress.warmup_until
    step = decide_stage(
        judgement,
        now=now,
        stage_deadline=progress.stage_deadline,
        stage_duration_s=monitor.duration_s,
        stage_canary_requests=progress.canary_requests,
        settings=settings,
        may_advance=may_advance,
        quiet_since=quiet_since,
        inconclusive_timeout_s=monitor.inconclusive_timeout_s,
    )
    if step.step == "advance" and progress.passing_windows < monitor.min_passing_windows:
        return StageDecision("continue")
    reason = step.reason
    if step.step == "rollback":
        prefix = GUARDRAIL_BREACH if step.code == CRITICAL_GUARDRAIL else EVIDENCE_AGAINST_CANARY
        reason = f"{prefix}: {step.reason}"
    elif step.code == INCONCLUSIVE and result.reasons:
        reason = f"{step.reason}: " + "; ".join(result.reasons)
    return StageDecision(step.step, reason, step.code)
