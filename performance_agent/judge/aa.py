"""The A/A check: is the first canary cohort already worse than the rest, before anything changes?

While the baseline is captured, the instances that will form the first canary cohort are compared
with the others by the same tests the judge runs (latency edges with the plan's margins, error
increase, throughput), once, on the whole capture. A cohort that is already slower (a bad node, a
hot GPU) would otherwise be blamed on the change, or hide it. The check spends
`AA_ALPHA_SHARE` of the workflow's alpha, split over the metrics it judges: identical servers
pause here with probability at most alpha * AA_ALPHA_SHARE (0.01 by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from performance_agent.judge.tolerances import AA_ALPHA_SHARE
from performance_agent.judge.window import JudgeState, MetricEvidence, judge_window

if TYPE_CHECKING:
    from performance_agent.judge.counts import CohortCounts
    from performance_agent.judge.plan import JudgePlan

__all__ = ("AA_KINDS", "AaResult", "aa_check")

#: Relative tests only: absolute limits are judged during the rollout itself.
AA_KINDS = frozenset({"latency", "error_rate_increase", "throughput"})


class AaResult(msgspec.Struct, kw_only=True):
    passed: bool
    threshold: float
    reasons: list[str]
    metrics: list[MetricEvidence] = msgspec.field(default_factory=list)


def aa_check(
    first_canary: CohortCounts, rest: CohortCounts, plan: JudgePlan, alpha_share: float = AA_ALPHA_SHARE
) -> AaResult:
    """Pass unless some metric's evidence against the first canary cohort reaches K_aa / (alpha * share)."""
    metrics = [metric for metric in plan.metrics if metric.kind in AA_KINDS]
    threshold = round(max(len(metrics), 1) / (plan.alpha * alpha_share), 9)
    aa_plan = msgspec.structs.replace(plan, metrics=metrics, threshold=threshold)
    _, judgement = judge_window(JudgeState(), aa_plan, first_canary, rest)
    reasons = [
        f"first canary cohort already worse than the rest before any change: {reason}" for reason in judgement.reasons
    ]
    return AaResult(
        passed=judgement.decision == "continue", threshold=threshold, reasons=reasons, metrics=judgement.metrics
    )
