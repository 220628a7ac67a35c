"""What a stage does after a window, once the judge has spoken (issue 10, low traffic).

There is no per-window `min_samples` verdict any more: a sparse window simply adds little
evidence. The stage advances when its `duration_s` is over, nothing rolled it back, and the canary
has served at least `min_canary_requests` requests pooled over the stage; until then the stage
extends, up to `max_stage_extension_s` (default: the stage's own `duration_s`), and then pauses
with `insufficient_canary_traffic`. Windows that could not be scraped stay `inconclusive` and
pause the stage after `inconclusive_timeout_s` without a judged window, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:
    from performance_agent.judge.tolerances import JudgeSettings
    from performance_agent.judge.window import WindowJudgement

__all__ = (
    "INCONCLUSIVE",
    "INSUFFICIENT_CANARY_TRAFFIC",
    "StageStep",
    "decide_stage",
    "resolve_min_canary_requests",
)

INSUFFICIENT_CANARY_TRAFFIC = "insufficient_canary_traffic"
INCONCLUSIVE = "inconclusive"
JUDGE_ROLLBACK = "judge_rollback"
CRITICAL_GUARDRAIL = "critical_guardrail"
STAGE_PASSED = "stage_passed"

Step = Literal["rollback", "advance", "pause", "continue"]


class StageStep(msgspec.Struct, kw_only=True, frozen=True):
    step: Step
    reason: str | None = None
    code: str | None = None


def resolve_min_canary_requests(judge_min: int | None, legacy_min_samples: int | None, default: int = 1000) -> int:
    """The stage's pooled floor: `judge.min_canary_requests`, else a body's `guardrails.min_samples`.

    Bodies written for the per-window gate set `min_samples`; using it as the pooled floor keeps
    them advancing as they did (a canary that met it every window meets it pooled).
    """
    if judge_min is not None:
        return judge_min
    if legacy_min_samples is not None:
        return legacy_min_samples
    return default


def decide_stage(
    judgement: WindowJudgement | None,
    *,
    now: float,
    stage_deadline: float,
    stage_duration_s: float,
    stage_canary_requests: float,
    settings: JudgeSettings,
    may_advance: bool = True,
    quiet_since: float | None = None,
    inconclusive_timeout_s: float | None = None,
    min_canary_requests: int | None = None,
) -> StageStep:
    """The next step of the stage after one window.

    `judgement` is None for a window that could not be scraped. `stage_canary_requests` are the
    canary's requests pooled since the stage's first judged window (this one included).
    `quiet_since` is when the stage last had a judged window (or its warm-up ended).
    `may_advance` is False while a human holds the stage: the judge may still roll back, but the
    stage neither advances nor pauses by itself. `min_canary_requests` overrides the settings'
    floor (see `resolve_min_canary_requests`).
    """
    if judgement is not None and judgement.decision == "rollback":
        code = CRITICAL_GUARDRAIL if judgement.critical else JUDGE_ROLLBACK
        return StageStep(step="rollback", reason="; ".join(judgement.reasons), code=code)
    if not may_advance:
        return StageStep(step="continue")
    if judgement is None:
        timeout = stage_duration_s if inconclusive_timeout_s is None else inconclusive_timeout_s
        since = stage_deadline - stage_duration_s if quiet_since is None else quiet_since
        if now - since >= timeout:
            return StageStep(
                step="pause",
                reason=f"no window could be judged for {now - since:.0f} s (limit {timeout:g} s)",
                code=INCONCLUSIVE,
            )
        return StageStep(step="continue")
    if now < stage_deadline:
        return StageStep(step="continue")
    floor = settings.min_canary_requests if min_canary_requests is None else min_canary_requests
    if stage_canary_requests >= floor:
        return StageStep(
            step="advance",
            reason=f"stage over with no rollback evidence; canary served {stage_canary_requests:.0f} requests",
            code=STAGE_PASSED,
        )
    extension = stage_duration_s if settings.max_stage_extension_s is None else settings.max_stage_extension_s
    if now >= stage_deadline + extension:
        return StageStep(
            step="pause",
            reason=(
                f"not enough canary traffic to judge: {stage_canary_requests:.0f} requests in the stage, "
                f"at least {floor} needed (extended {extension:g} s)"
            ),
            code=INSUFFICIENT_CANARY_TRAFFIC,
        )
    return StageStep(step="continue")
