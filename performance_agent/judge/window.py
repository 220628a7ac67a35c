"""Judge one window: add its likelihood ratios to the running evidence and decide.

Per metric the running evidence is an e-process: the mean over edges and alternatives of a
mixture over start times of products of the windows' likelihood ratios (the product from window
s on, weighted w_s = 1/2 for s = 1 and 1 / (2 s (s - 1)) after, the weights summing to 1), so that
a regression that only starts late is not buried under the evidence of the harmless windows
before it. Under the null (the canary no worse than tolerated) every product is a nonnegative
supermartingale starting at 1, and so is any such average; Ville's inequality then bounds the
chance that it *ever* reaches 1/a by a. That is why looking at every window, extending a stage or
carrying the evidence into the next stage does not inflate false rollbacks: the threshold
K / (alpha * 0.7) is crossed by a harmless canary with probability at most alpha * 0.7 / K per
metric, whenever and however often one looks.

`JudgeState` holds, per metric, edge and alternative, the log of the started part of that mixture
(S_t = LR_t (S_{t-1} + w_t)); the e-value is S_t plus the weight not started yet, 1 / (2t). A
window costs the new window's ratios and nothing more.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import msgspec

from performance_agent.judge.evidence import EdgeWindow, edge_key, metric_window
from performance_agent.judge.likelihood import log_mean_exp

if TYPE_CHECKING:
    from performance_agent.judge.counts import CohortCounts
    from performance_agent.judge.plan import JudgePlan, MetricPlan

__all__ = ("EdgeEvidence", "JudgeState", "MetricEvidence", "MetricState", "WindowJudgement", "judge_window")

Decision = Literal["rollback", "continue"]
ReferenceName = Literal["control", "baseline"]
# e-values are shown as plain numbers; beyond this they are capped (their logs are exact).
_DISPLAY_CAP = 1e300


class MetricState(msgspec.Struct, kw_only=True):
    """Running evidence of one metric: edge key -> log S_t per alternative (see the module docstring)."""

    edges: dict[str, list[float]] = msgspec.field(default_factory=dict)
    windows: int = 0


class JudgeState(msgspec.Struct, kw_only=True):
    """Everything the judge carries from window to window and stage to stage (persist it as is)."""

    metrics: dict[str, MetricState] = msgspec.field(default_factory=dict)
    windows: int = 0
    canary_requests: float = 0.0


class EdgeEvidence(msgspec.Struct, kw_only=True):
    """One edge (or one count test) in one window.

    `margin` is the tolerated odds ratio canary vs reference (rate ratio for throughput and
    preemptions); `tolerated_share` the share the canary is held to without a reference.
    `window_evidence` is this window's likelihood ratio (averaged over the alternatives),
    `evidence` the edge's running e-value.
    """

    key: str
    edge: float | None
    canary_above: float
    canary_total: float
    canary_share: float | None
    reference_above: float | None
    reference_total: float | None
    reference_share: float | None
    margin: float | None
    tolerated_share: float | None
    window_evidence: float
    evidence: float


class MetricEvidence(msgspec.Struct, kw_only=True):
    metric: str
    guardrail: str
    kind: str
    tolerance: float
    critical: bool
    judged: bool
    window_evidence: float
    evidence: float
    log_evidence: float
    threshold: float
    exceeded: bool
    edges: list[EdgeEvidence] = msgspec.field(default_factory=list)
    note: str | None = None


class WindowJudgement(msgspec.Struct, kw_only=True):
    decision: Decision
    critical: bool
    reasons: list[str]
    reference: ReferenceName
    threshold: float
    canary_requests: float
    reference_requests: float | None
    metrics: list[MetricEvidence] = msgspec.field(default_factory=list)


def _shown(log_value: float) -> float:
    if log_value >= math.log(_DISPLAY_CAP):
        return _DISPLAY_CAP
    return math.exp(log_value)


def _share(above: float | None, total: float | None) -> float | None:
    if above is None or total is None or total <= 0:
        return None
    return above / total


def _edge_keys(plan: MetricPlan) -> list[str]:
    if plan.kind in ("latency", "latency_limit", "goodput"):
        return [edge_key(edge) for edge in plan.edges]
    return [plan.kind]


def _log_start_weight(window_index: int) -> float:
    """log w_t: half the weight starts at the first window, 1 / (2 t (t - 1)) at window t >= 2."""
    if window_index <= 1:
        return math.log(0.5)
    return -math.log(2.0 * window_index * (window_index - 1))


def _log_unstarted(window_index: int) -> float:
    """log of the weight not started after `window_index` windows: 1 / (2 t), 1 before any."""
    return 0.0 if window_index <= 0 else -math.log(2.0 * window_index)


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def _edge_log_evidence(started: list[float] | None, window_index: int) -> float:
    """log e-value of one edge: the mean over alternatives of started part + unstarted weight."""
    if started is None:
        return 0.0
    unstarted = _log_unstarted(window_index)
    return log_mean_exp([_log_add(value, unstarted) for value in started])


def _metric_log_evidence(plan: MetricPlan, edges: dict[str, list[float]], window_index: int) -> float:
    keys = _edge_keys(plan)
    if not keys:
        return 0.0
    return log_mean_exp([_edge_log_evidence(edges.get(key), window_index) for key in keys])


def _edge_evidence(window: EdgeWindow, log_before: float, log_evidence: float, kind: str) -> EdgeEvidence:
    rate_test = kind in ("throughput", "preemptions")
    return EdgeEvidence(
        key=window.key,
        edge=window.edge,
        canary_above=window.canary_above,
        canary_total=window.canary_total,
        canary_share=None if rate_test else _share(window.canary_above, window.canary_total),
        reference_above=window.reference_above,
        reference_total=window.reference_total,
        reference_share=None if rate_test else _share(window.reference_above, window.reference_total),
        margin=window.null_odds_ratio,
        tolerated_share=window.null_share if not rate_test else None,
        window_evidence=_shown(log_evidence - log_before),
        evidence=_shown(log_evidence),
    )


def _judge_metric(
    plan: MetricPlan,
    previous: MetricState | None,
    canary: CohortCounts,
    reference: CohortCounts | None,
    judge: JudgePlan,
    window_index: int,
) -> tuple[MetricState, MetricEvidence]:
    """Window t multiplies every started component by its ratio (1 without data) after starting w_t more."""
    before = previous.edges if previous is not None else {}
    keys = _edge_keys(plan)
    windows = (
        {window.key: window for window in metric_window(plan, canary, reference, judge.alternatives)} if keys else {}
    )
    log_weight = _log_start_weight(window_index)
    alternatives = len(judge.alternatives)
    edges: dict[str, list[float]] = {}
    shown = []
    for key in keys:
        window = windows.get(key)
        ratios = window.log_ratios if window is not None else [0.0] * alternatives
        old = before.get(key)
        start = old if old is not None and len(old) == alternatives else [-math.inf] * alternatives
        edges[key] = [_log_add(value, log_weight) + ratio for value, ratio in zip(start, ratios, strict=True)]
        if window is not None:
            log_before = _edge_log_evidence(old, window_index - 1)
            shown.append(_edge_evidence(window, log_before, _edge_log_evidence(edges[key], window_index), plan.kind))
    state = MetricState(edges=edges, windows=(previous.windows if previous is not None else 0) + 1)
    log_evidence = _metric_log_evidence(plan, edges, window_index)
    log_before = _metric_log_evidence(plan, before, window_index - 1) if before else 0.0
    evidence = MetricEvidence(
        metric=plan.metric,
        guardrail=plan.guardrail,
        kind=plan.kind,
        tolerance=plan.tolerance,
        critical=plan.critical,
        judged=bool(windows),
        window_evidence=_shown(log_evidence - log_before),
        evidence=_shown(log_evidence),
        log_evidence=log_evidence,
        threshold=judge.threshold,
        exceeded=log_evidence >= judge.log_threshold,
        edges=shown,
        note=plan.note if plan.note is not None or windows else _unjudged_note(plan, reference),
    )
    return state, evidence


def _unjudged_note(plan: MetricPlan, reference: CohortCounts | None) -> str:
    if reference is None and plan.kind in ("throughput", "preemptions"):
        return "needs a concurrent control cohort (load differs from the baseline's)"
    return "no data in this window"


def _reason(metric: MetricEvidence) -> str:
    prefix = "critical: " if metric.critical else ""
    worst = max(metric.edges, key=lambda edge: edge.evidence, default=None)
    detail = ""
    if worst is not None and worst.canary_share is not None:
        where = f" above {worst.edge:g} s" if worst.edge is not None else ""
        compared = f" vs reference {worst.reference_share:.2%}" if worst.reference_share is not None else ""
        detail = f"; canary {worst.canary_share:.2%}{where}{compared}"
    return (
        f"{prefix}{metric.metric} beyond {metric.guardrail} {metric.tolerance:g}: evidence "
        f"{metric.evidence:.3g} >= threshold {metric.threshold:.3g}{detail}"
    )


def judge_window(
    state: JudgeState, plan: JudgePlan, canary: CohortCounts, reference: CohortCounts | None
) -> tuple[JudgeState, WindowJudgement]:
    """Add one window to the evidence. `reference` is the concurrent control cohort; None means the
    control is gone (100% stage) and the canary is held to the plan's baseline-derived shares.

    Never pass the baseline itself as `reference`: re-used every window it would count the same
    baseline requests again and again as if they were new, which breaks the error guarantee.
    """
    metrics: dict[str, MetricState] = {}
    shown: list[MetricEvidence] = []
    for metric_plan in plan.metrics:
        metric_state, evidence = _judge_metric(
            metric_plan, state.metrics.get(metric_plan.metric), canary, reference, plan, state.windows + 1
        )
        metrics[metric_plan.metric] = metric_state
        shown.append(evidence)
    exceeded = [metric for metric in shown if metric.exceeded]
    new_state = JudgeState(
        metrics=metrics, windows=state.windows + 1, canary_requests=state.canary_requests + canary.requests
    )
    judgement = WindowJudgement(
        decision="rollback" if exceeded else "continue",
        critical=any(metric.critical for metric in exceeded),
        reasons=[_reason(metric) for metric in exceeded],
        reference="control" if reference is not None else "baseline",
        threshold=plan.threshold,
        canary_requests=canary.requests,
        reference_requests=None if reference is None else reference.requests,
        metrics=shown,
    )
    return new_state, judgement
