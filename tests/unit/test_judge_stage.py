"""Stage logic after the judge: pooled canary floor, extension, insufficient traffic, holds, scrape gaps."""

from __future__ import annotations

from performance_agent.judge import (
    INSUFFICIENT_CANARY_TRAFFIC,
    JudgeSettings,
    StageStep,
    WindowJudgement,
    decide_stage,
    resolve_min_canary_requests,
)

SETTINGS = JudgeSettings()


def judgement(decision: str = "continue", *, critical: bool = False) -> WindowJudgement:
    return WindowJudgement(
        decision="rollback" if decision == "rollback" else "continue",
        critical=critical,
        reasons=["ttft_s beyond max_ttft_p99_increase 0.2: evidence 300 >= threshold 200"]
        if decision == "rollback"
        else [],
        reference="control",
        threshold=200.0,
        canary_requests=120.0,
        reference_requests=1080.0,
    )


def decide(window: WindowJudgement | None = None, **overrides: object) -> StageStep:
    arguments: dict[str, object] = {
        "now": 300.0,
        "stage_deadline": 300.0,
        "stage_duration_s": 300.0,
        "stage_canary_requests": 1920.0,
        "settings": SETTINGS,
    }
    arguments.update(overrides)
    return decide_stage(judgement() if window is None else window, **arguments)  # type: ignore[arg-type]


def test_the_stage_advances_when_over_with_enough_pooled_canary_requests() -> None:
    step = decide()
    assert (step.step, step.code) == ("advance", "stage_passed")
    assert "1920 requests" in (step.reason or "")
    assert decide(now=285.0).step == "continue"


def test_too_little_canary_traffic_extends_then_pauses() -> None:
    assert decide(stage_canary_requests=240.0).step == "continue"
    assert decide(stage_canary_requests=240.0, now=585.0).step == "continue"
    paused = decide(stage_canary_requests=540.0, now=600.0)
    assert (paused.step, paused.code) == ("pause", INSUFFICIENT_CANARY_TRAFFIC)
    assert "540 requests in the stage, at least 1000 needed" in (paused.reason or "")
    assert decide(stage_canary_requests=1000.0, now=450.0).step == "advance"  # reached during the extension


def test_the_extension_is_configurable() -> None:
    short = JudgeSettings(max_stage_extension_s=30.0)
    assert decide(stage_canary_requests=10.0, now=330.0, settings=short).step == "pause"
    assert decide(stage_canary_requests=10.0, now=315.0, settings=short).step == "continue"
    none = JudgeSettings(max_stage_extension_s=0.0)
    assert decide(stage_canary_requests=10.0, settings=none).code == INSUFFICIENT_CANARY_TRAFFIC


def test_a_rollback_wins_even_while_a_human_holds_the_stage() -> None:
    step = decide(judgement("rollback"), may_advance=False, now=100.0)
    assert (step.step, step.code) == ("rollback", "judge_rollback")
    assert step.reason is not None
    assert step.reason.startswith("ttft_s beyond")
    critical = decide(judgement("rollback", critical=True))
    assert critical.code == "critical_guardrail"
    held = decide(may_advance=False)
    assert held == StageStep(step="continue")


def unscraped(now: float, **overrides: object) -> StageStep:
    arguments: dict[str, object] = {
        "now": now,
        "stage_deadline": 300.0,
        "stage_duration_s": 300.0,
        "stage_canary_requests": 5000.0,
        "settings": SETTINGS,
    }
    arguments.update(overrides)
    return decide_stage(None, **arguments)  # type: ignore[arg-type]


def test_unscraped_windows_are_inconclusive_and_pause_after_the_timeout() -> None:
    assert unscraped(200.0, quiet_since=100.0, inconclusive_timeout_s=150.0).step == "continue"
    paused = unscraped(250.0, quiet_since=100.0, inconclusive_timeout_s=150.0)
    assert (paused.step, paused.code) == ("pause", "inconclusive")
    # Without a last judged window the stage's start counts; the timeout defaults to the duration.
    assert unscraped(300.0).step == "pause"
    assert unscraped(299.0).step == "continue"
    assert unscraped(300.0, may_advance=False).step == "continue"


def test_the_pooled_floor_comes_from_the_judge_then_the_legacy_min_samples() -> None:
    assert resolve_min_canary_requests(500, 100) == 500
    assert resolve_min_canary_requests(None, 100) == 100
    assert resolve_min_canary_requests(None, None) == 1000
    assert resolve_min_canary_requests(None, None, default=2000) == 2000
    assert decide(stage_canary_requests=150.0, min_canary_requests=100).step == "advance"
    assert decide(stage_canary_requests=150.0).step == "continue"
