"""Reconciler paths off the main road: no baseline, the loop itself, stale ticks, a crash inside one workflow."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from performance_agent.simulator.fleet import ManualClock, start_simulator
from performance_agent.workflows.machine import UserAction
from tests.rollout_support import ReconcilerHarness, WebhookReceiver, fleet_forwarder
from tests.unit.test_reconciler import DONE, STEP_S, rollout

if TYPE_CHECKING:
    from collections.abc import Iterator

    from performance_agent.simulator.fleet import SimulatedFleet


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fleet(clock: ManualClock) -> Iterator[SimulatedFleet]:
    with start_simulator("vllm", 2, clock=clock) as running:
        clock.advance(120)
        yield running


@pytest.fixture
def receiver(fleet: SimulatedFleet) -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(forward=fleet_forwarder(fleet)).start()
    yield started
    started.stop()


def test_no_baseline_fails_the_workflow_and_retry_rollback_releases_it(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    fleet.set_faults("vllm-1", http_error=503)

    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "failed"
            view, _ = await harness.service.get(workflow_id)
            assert view.status_reason == "no baseline: cannot scrape vllm-1 (upstream_error)"
            assert view.changed_count == 0
            assert receiver.deliveries == []
            assert await harness.workflows.active_workflow_of("vllm-0") == workflow_id  # failed stays active
            await harness.service.act(workflow_id, UserAction.RETRY_ROLLBACK, actor="lead")
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "rolled_back"
            assert receiver.deliveries == []  # nothing had changed, nothing to revert
            assert await harness.workflows.active_workflow_of("vllm-0") is None

    asyncio.run(scenario())


def test_the_loop_ticks_publishes_statuses_and_survives_a_broken_workflow(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet)
            first = (await harness.start(rollout(ids[:1], receiver.url, approval={"required": True}))).workflow_id
            second = (await harness.start(rollout(ids[1:], receiver.url))).workflow_id
            beats: list[int] = []
            sleeps: list[float] = []

            async def sleep(seconds: float) -> None:
                sleeps.append(seconds)
                clock.advance(STEP_S)
                if len(sleeps) == 3:
                    raise asyncio.CancelledError

            real_process = harness.reconciler.process

            async def flaky(workflow_id: str) -> None:
                if workflow_id == second and len(sleeps) == 0:
                    raise RuntimeError("one bad workflow")
                await real_process(workflow_id)

            harness.reconciler._sleep = sleep
            harness.reconciler.process = flaky  # type: ignore[method-assign]
            with pytest.raises(asyncio.CancelledError):
                await harness.reconciler.run(lambda: beats.append(1))
            assert len(beats) == 3
            assert sleeps == [harness.settings.workflow_tick_s] * 3
            assert await harness.status(first) == "pending_approval"  # no deadline: never due
            assert await harness.status(second) == "capturing_baseline"  # the crash did not stop the loop
            stored = await harness.workflows.get(second)
            assert stored is not None
            assert stored.doc.baseline_started_at is not None  # processed on the next tick
            counts = {
                status: harness.agent.metrics.registry.get_sample_value(
                    "performance_agent_workflows", {"status": status}
                )
                for status in ("pending_approval", "capturing_baseline", "completed")
            }
            assert counts == {"pending_approval": 1.0, "capturing_baseline": 1.0, "completed": 0.0}

    asyncio.run(scenario())


def test_ticks_skip_workflows_that_are_not_due_or_not_active(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            assert await harness.reconciler.tick() == [workflow_id]
            stored = await harness.workflows.get(workflow_id)
            assert stored is not None
            version = stored.version
            assert await harness.reconciler.tick() == []  # next look is one interval away
            await harness.reconciler.process(workflow_id)  # called directly anyway: nothing happens
            await harness.service.act(workflow_id, UserAction.CANCEL, actor="ops")
            await harness.reconciler.process(workflow_id)
            await harness.reconciler.process("unknown")
            after = await harness.workflows.get(workflow_id)
            assert after is not None
            assert after.version == version + 1  # only the cancel wrote
            assert after.doc.status == "cancelled"

    asyncio.run(scenario())
