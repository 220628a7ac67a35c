"""Wiring the judgement loop into a running agent (called by the app's lifespan)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from performance_agent.judgements.runner import JudgementRunner
from performance_agent.storage.judgements import SqliteJudgementRepository
from performance_agent.workflows.runtime import build_observer, slo_latency_targets

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.context import AgentContext

__all__ = ("build_judgement_runner", "start_judgement_runner")


def build_judgement_runner(agent: AgentContext, clock: Callable[[], float] = time.time) -> JudgementRunner:
    """The loop on the agent's storage, reading cohorts as workflows do; ticks as often as the reconciler."""
    return JudgementRunner(
        judgements=SqliteJudgementRepository(agent.database),
        observer=build_observer(agent, clock),
        clock=clock,
        slo_targets=slo_latency_targets(agent),
        tick_s=agent.settings.workflow_tick_s,
    )


def start_judgement_runner(agent: AgentContext) -> JudgementRunner:
    runner = build_judgement_runner(agent)
    agent.loops.start("judgement-runner", runner.run, stale_after_s=max(60.0, agent.settings.workflow_tick_s * 10))
    return runner
