"""The stored judgement and the pure rules of its verdict.

A judgement is the workflow judge without a rollout: the same windows, the same evidence, the
same threshold, on two cohorts that an outside controller (Argo Rollouts, Flagger) moves. The
document holds everything the background loop needs to continue after a restart (the judge's
plan and cumulative state, the window marks), like a workflow document does.

Verdicts:
- `fail` as soon as a window's evidence crosses the threshold or an absolute limit is breached;
  final, and `ok` turns false.
- While running and not failed: `running`, `ok` true.
- When it stops (`DELETE`, or `max_duration_s` after creation): `pass` if it never failed and the
  canary served at least `judge.min_canary_requests` requests in its judged windows, else
  `inconclusive` (not enough traffic to tell, or nothing could be read).
"""

from __future__ import annotations

import msgspec

from performance_agent.judge import JudgePlan, JudgeState, WindowJudgement
from performance_agent.judgements.schemas import JudgementSetup, JudgementStatus, JudgementVerdict

__all__ = ("JudgementDoc", "final_verdict")


class JudgementDoc(JudgementSetup, kw_only=True):
    created_at: float
    updated_at: float
    status: JudgementStatus = "running"
    verdict: JudgementVerdict = "running"
    reason: str | None = None
    finished_at: float | None = None
    next_due_at: float | None = None
    window_started_at: float | None = None
    marks: dict[str, float] = msgspec.field(default_factory=dict)
    windows: int = 0
    inconclusive_windows: int = 0
    canary_scrape_failures: int = 0
    canary_requests: float = 0.0
    control_requests: float = 0.0
    scrape_errors: dict[str, str] = msgspec.field(default_factory=dict)
    plan: JudgePlan | None = None
    state: JudgeState | None = None
    evidence: WindowJudgement | None = None

    @property
    def ends_at(self) -> float:
        return self.created_at + self.max_duration_s

    @property
    def ok(self) -> bool:
        return self.verdict != "fail"


def final_verdict(doc: JudgementDoc) -> tuple[JudgementVerdict, str]:
    """The verdict a judgement stops with, and why (a failed one stays failed)."""
    if doc.verdict == "fail":
        return "fail", doc.reason or "the canary failed"
    floor = doc.judge.min_canary_requests
    if doc.canary_requests >= floor:
        return "pass", f"no evidence against the canary over {doc.canary_requests:g} requests (floor {floor})"
    return (
        "inconclusive",
        f"the canary served {doc.canary_requests:g} judged requests, fewer than min_canary_requests {floor}",
    )
