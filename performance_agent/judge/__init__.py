"""The canary judge: anytime-valid sequential tests on histogram bucket counts (issue 10).

Pure: no I/O, no clock, no Litestar, httpx, sqlite3 or asyncio. The workflows reconciler and the
judgement API feed it counts; everything here is tested with plain numbers. Read `docs/rollout.md`
("How the judge decides") for the statistics and how to read a verdict.

Use: `plan = plan_margins(baseline, tolerances)` once per workflow, `aa_check(...)` on the baseline
capture, then per window `state, judgement = judge_window(state, plan, canary, control_or_None)`
and `decide_stage(judgement, ...)`. Persist `plan` and `state` with the workflow.
"""

from performance_agent.judge.aa import AaResult, aa_check
from performance_agent.judge.counts import BucketCounts, CohortCounts, bucket_counts, cohort_counts, merge_cohorts
from performance_agent.judge.plan import EdgePlan, JudgePlan, MetricPlan, plan_margins
from performance_agent.judge.stage import (
    INSUFFICIENT_CANARY_TRAFFIC,
    StageStep,
    decide_stage,
    resolve_min_canary_requests,
)
from performance_agent.judge.tolerances import JudgeSettings, Tolerances
from performance_agent.judge.window import (
    EdgeEvidence,
    JudgeState,
    MetricEvidence,
    MetricState,
    WindowJudgement,
    judge_window,
)

__all__ = (
    "INSUFFICIENT_CANARY_TRAFFIC",
    "AaResult",
    "BucketCounts",
    "CohortCounts",
    "EdgeEvidence",
    "EdgePlan",
    "JudgePlan",
    "JudgeSettings",
    "JudgeState",
    "MetricEvidence",
    "MetricPlan",
    "MetricState",
    "StageStep",
    "Tolerances",
    "WindowJudgement",
    "aa_check",
    "bucket_counts",
    "cohort_counts",
    "decide_stage",
    "judge_window",
    "merge_cohorts",
    "plan_margins",
    "resolve_min_canary_requests",
)
