"""The reconciler with the sequential judge: the A/A pause, too little canary traffic, stored evidence,
and workflows stored before the judge existed (they decode and carry on)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from performance_agent.judge import JudgeSettings
from performance_agent.simulator.fleet import ManualClock, start_simulator
from performance_agent.storage.sql import SqlConnection
from performance_agent.workflows.machine import UserAction
from tests.rollout_support import ReconcilerHarness, WebhookReceiver
from tests.unit.test_reconciler import DONE, STEP_S, clock, receiver, rollout

if TYPE_CHECKING:
    from collections.abc import Iterator

    from performance_agent.simulator.fleet import SimulatedFleet


__all__ = ("clock", "receiver")  # the shared fixtures, used with this module's heavy-tailed `fleet`


@pytest.fixture
def fleet(clock: ManualClock) -> Iterator[SimulatedFleet]:
    with start_simulator("vllm", 4, clock=clock, latency_shape="heavy-tailed") as running:
        clock.advance(120)
        yield running


def test_a_first_canary_already_slower_pauses_before_any_change_and_resume_checks_again(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    fleet.set_faults("vllm-0", latency_regression=3.0)  # a bad node, before anything changed

    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet, max_num_seqs=256)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            assert await harness.run_until(workflow_id, DONE | {"paused"}, step_s=STEP_S) == "paused"
            view, _ = await harness.service.get(workflow_id)
            assert (view.changed_count, view.stage_index) == (0, 0)
            assert view.status_reason is not None
            assert view.status_reason.startswith("first canary cohort already worse than the rest before any change")
            assert receiver.deliveries == []  # nothing was applied
            assert view.baseline is not None
            assert view.baseline.aa_check is not None
            assert view.baseline.aa_check.passed is False
            assert any(metric.exceeded for metric in view.baseline.aa_check.metrics if metric.log_evidence > 0)
            assert view.baseline.counts is not None
            assert view.baseline.counts.instances == 4
            events = await harness.service.events(workflow_id)
            suspect = [e for e in events if e.action == "baseline_suspect"]
            assert len(suspect) == 1
            assert suspect[0].details == {"first_canary": ["vllm-0"]}
            for _ in range(5):  # paused before any change: nothing is watched, nothing moves
                await harness.step(STEP_S)
            assert await harness.status(workflow_id) == "paused"
            fleet.set_faults("vllm-0", latency_regression=1.0)  # the node was fixed
            clock.advance(300)  # and its queue drained
            await harness.service.act(workflow_id, UserAction.RESUME, actor="lead", reason="node replaced")
            assert await harness.status(workflow_id) == "capturing_baseline"
            assert await harness.run_until(workflow_id, {"monitoring"} | DONE, step_s=STEP_S) == "monitoring"
            again, _ = await harness.service.get(workflow_id)
            assert again.baseline is not None
            assert again.baseline.aa_check is not None
            assert again.baseline.aa_check.passed is True

    asyncio.run(scenario())


def test_a_canary_short_of_traffic_extends_its_stage_then_pauses_insufficient_canary_traffic(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet, max_num_seqs=256)
            body = rollout(ids, receiver.url)
            body["guardrails"] = {}  # no min_samples: the judge's own floor applies
            body["judge"] = {"min_canary_requests": 5000, "max_stage_extension_s": 60}
            workflow_id = (await harness.start(body)).workflow_id
            assert await harness.run_until(workflow_id, DONE | {"paused"}, step_s=STEP_S) == "paused"
            view, _ = await harness.service.get(workflow_id)
            assert view.status_reason == "insufficient_canary_traffic"
            assert view.stage_index == 0
            assert view.windows is not None
            assert {w.verdict for w in view.windows} == {"pass"}
            pooled = view.windows[-1].stage_canary_requests
            assert pooled is not None
            assert 0 < pooled < 5000
            # Monitoring started after the warm-up; the stage ran its 90 s and then 60 s more.
            assert view.windows[-1].ended_at.timestamp() - view.windows[0].started_at.timestamp() >= 90
            events = await harness.service.events(workflow_id)
            pause = [e for e in events if e.action == "inconclusive_too_long"][-1]
            assert pause.reason == "insufficient_canary_traffic"
            assert pause.details["min_canary_requests"] == 5000
            assert pause.details["canary_requests"] == pooled
            assert str(pause.details["explanation"]).startswith("not enough canary traffic to judge")

    asyncio.run(scenario())


def _strip_judge(stored: dict[str, Any]) -> dict[str, Any]:
    """What a workflow document looked like before the sequential judge (issue 10)."""
    for key in ("judge", "judge_plan", "judge_state"):
        stored.pop(key, None)
    if stored.get("baseline") is not None:
        stored["baseline"].pop("counts", None)
        stored["baseline"].pop("aa_check", None)
    if stored.get("progress") is not None:
        stored["progress"].pop("canary_requests", None)
    return stored


def test_a_workflow_stored_before_the_judge_decodes_and_continues_to_completion(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet, max_num_seqs=256)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            assert await harness.run_until(workflow_id, {"monitoring"}, step_s=STEP_S) == "monitoring"

            def rewrite(connection: SqlConnection) -> None:
                (raw,) = connection.execute(
                    "SELECT doc FROM workflows WHERE workflow_id = ?", (workflow_id,)
                ).fetchone()
                old = msgspec.json.encode(_strip_judge(msgspec.json.decode(raw)))
                connection.execute("UPDATE workflows SET doc = ? WHERE workflow_id = ?", (old, workflow_id))

            await harness.agent.database.run(rewrite)
            stored = await harness.workflows.get(workflow_id)
            assert stored is not None
            assert stored.doc.judge is None
            # the old gate's per-window floor becomes the pooled floor
            assert stored.doc.judge_settings == JudgeSettings(min_canary_requests=150)
            assert stored.doc.judge_plan is None
            assert stored.doc.baseline is not None
            assert stored.doc.baseline.counts is None
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "completed"
            after = await harness.workflows.get(workflow_id)
            assert after is not None
            assert after.doc.judge_plan is not None  # planned from the next window
            view, _ = await harness.service.get(workflow_id)
            assert view.windows is not None
            assert all(w.evidence is not None for w in view.windows)
            assert {w.verdict for w in view.windows} == {"pass"}

    asyncio.run(scenario())
