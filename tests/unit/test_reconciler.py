"""The reconciler on an injectable clock against a simulated fleet: whole rollouts tick by tick, no sleeping.

One `ManualClock` drives both the reconciler and the simulated servers, so a 30-second health
window is a call to `clock.advance`. Webhooks go to a real receiver on 127.0.0.1 that applies
each payload to the fleet, as a deployment system would.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.outbound.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from performance_agent.simulator.fleet import ManualClock, start_simulator
from performance_agent.workflows.machine import UserAction
from performance_agent.workflows.state import outbox_event_id
from tests.agent_process import free_port
from tests.rollout_support import ReconcilerHarness, WebhookReceiver, fleet_forwarder

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

    from performance_agent.simulator.fleet import SimulatedFleet

SECRET = "rollout-secret-0123"
STEP_S = 10.0
MONITOR = {"duration_s": 90, "interval_s": 30, "warmup_s": 60, "min_passing_windows": 2}
GUARDRAILS = {
    "min_samples": 150,
    "max_ttft_p99_increase": 1.5,
    "max_itl_p99_increase": 0.5,
    "max_e2e_p99_increase": 0.5,
}
DONE = {"completed", "rolled_back", "failed", "cancelled", "rejected"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fleet(clock: ManualClock) -> Iterator[SimulatedFleet]:
    with start_simulator("vllm", 4, clock=clock) as running:
        clock.advance(120)  # servers warm before the rollout starts
        yield running


@pytest.fixture
def receiver(fleet: SimulatedFleet) -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(forward=fleet_forwarder(fleet)).start()
    yield started
    started.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def rollout(ids: list[str], url: str, **extra: Any) -> dict[str, Any]:
    return {
        "instance_ids": ids,
        "changes": {"max_num_seqs": 128},
        "actuator": {"type": "webhook", "url": url},
        "monitor": MONITOR,
        "guardrails": GUARDRAILS,
        **extra,
    }


def calls(receiver: WebhookReceiver) -> list[tuple[str, int, list[str]]]:
    return [(d.payload["action"], d.payload["stage_index"], d.payload["instance_ids"]) for d in receiver.accepted()]


@pytest.mark.slow
def test_a_good_change_goes_through_every_stage_and_the_gate(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock, webhook_secret=SECRET) as harness:
            ids = await harness.register_fleet(fleet, max_num_seqs=256)
            workflow = await harness.start(rollout(ids, receiver.url, approval={"stage_gates": [2]}))
            workflow_id = workflow.workflow_id
            assert await harness.run_until(workflow_id, {"awaiting_approval"}, step_s=STEP_S) == "awaiting_approval"
            held = await harness.workflows.get(workflow_id)
            assert held is not None
            assert (held.doc.stage_index, held.doc.changed_count) == (1, 2)
            assert calls(receiver) == [("apply", 0, ["vllm-0"]), ("apply", 1, ["vllm-1"])]
            for _ in range(12):  # nobody approves for two minutes: it waits, guardrails keep running
                await harness.step(STEP_S)
            assert await harness.status(workflow_id) == "awaiting_approval"
            await harness.service.act(workflow_id, UserAction.APPROVE, actor="lead", comment="go")
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "completed"
            assert calls(receiver) == [
                ("apply", 0, ["vllm-0"]),
                ("apply", 1, ["vllm-1"]),
                ("apply", 2, ["vllm-2", "vllm-3"]),
            ]
            for delivery in receiver.accepted():
                payload = delivery.payload
                assert payload["event_id"] == outbox_event_id(workflow_id, "apply", payload["stage_index"])
                assert payload["changes"] == {"max_num_seqs": 128}
                assert payload["engine"] == "vllm"
                assert payload["percent"] == [10, 50, 100][payload["stage_index"]]
                assert payload["previous"] == {i: {"max_num_seqs": 256} for i in payload["instance_ids"]}
                assert verify_signature(
                    SECRET, delivery.headers[TIMESTAMP_HEADER], delivery.headers[SIGNATURE_HEADER], delivery.body
                )
            assert all(fleet.state(i)["flags"] == {"--max-num-seqs": 128} for i in ids)
            view, _ = await harness.service.get(workflow_id)
            assert view.baseline is not None
            assert view.baseline.figures.instances == 4
            assert view.windows is not None
            verdicts = {(w.stage_index, w.verdict) for w in view.windows}
            assert {stage for stage, verdict in verdicts if verdict == "pass"} == {0, 1, 2}
            held_windows = [w for w in view.windows if w.status == "awaiting_approval"]
            assert held_windows  # the health gate kept watching while a human decided
            last = view.windows[-1]
            assert last.reference == "baseline"  # no control left at 100%
            assert last.control == view.baseline.figures
            events = await harness.service.events(workflow_id)
            assert [(e.action, e.to_status, e.actor) for e in events if e.type != "transition"] == [
                ("create", "capturing_baseline", "ops"),
                ("approve", "applying", "lead"),
            ]
            transitions = [e.action for e in events if e.type == "transition"]
            assert transitions[:3] == ["baseline_ready", "stage_applied", "analysis_passed"]
            assert transitions[-1] == "analysis_passed"

    run(scenario)


@pytest.mark.slow
def test_a_regressing_change_is_rolled_back_in_its_first_stage(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet, max_num_seqs=256)
            body = rollout(ids, receiver.url)
            body["changes"] = {"max_num_seqs": 2}  # starves the server: a classic bad tuning
            workflow_id = (await harness.start(body)).workflow_id
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "rolled_back"
            assert calls(receiver) == [("apply", 0, ["vllm-0"]), ("rollback", 0, ["vllm-0"])]
            assert fleet.state("vllm-0")["flags"] == {"--max-num-seqs": 256}
            assert all(fleet.state(i)["restarts"] == 0 for i in ids[1:])  # control never touched
            view, _ = await harness.service.get(workflow_id)
            assert view.status_reason is not None
            # One window is enough: the starved canary's share of the requests crosses the evidence threshold.
            assert view.status_reason.startswith("evidence against the canary: ")
            assert "throughput beyond max_throughput_decrease 0.5" in view.status_reason
            assert view.windows is not None
            assert [w.verdict for w in view.windows] == ["fail"]
            evidence = view.windows[0].evidence
            assert evidence is not None
            assert (evidence.decision, evidence.critical, evidence.reference) == ("rollback", False, "control")
            throughput = next(m for m in evidence.metrics if m.metric == "throughput")
            assert throughput.exceeded
            assert throughput.evidence >= throughput.threshold == evidence.threshold
            assert view.windows[0].canary.instances == 1
            assert view.windows[0].control is not None
            assert view.windows[0].control.instances == 3
            rollback = receiver.accepted()[1].payload
            assert rollback["event_id"] == outbox_event_id(workflow_id, "rollback", 0)
            assert rollback["previous"] == {"vllm-0": {"max_num_seqs": 256}}

    run(scenario)


def test_a_regression_in_the_second_stage_reverts_both_stages_latest_first(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet, max_num_seqs=256)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            for _ in range(200):
                stored = await harness.workflows.get(workflow_id)
                assert stored is not None
                if stored.doc.stage_index == 1 and stored.doc.status == "monitoring":
                    break
                await harness.step(STEP_S)
            for instance_id in ("vllm-0", "vllm-1"):  # the change turns out to hurt under this load
                fleet.set_faults(instance_id, latency_regression=4.0)
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "rolled_back"
            assert calls(receiver) == [
                ("apply", 0, ["vllm-0"]),
                ("apply", 1, ["vllm-1"]),
                ("rollback", 1, ["vllm-1"]),
                ("rollback", 0, ["vllm-0"]),
            ]
            view, _ = await harness.service.get(workflow_id)
            assert view.stage_index == 1
            assert view.changed_count == 0
            assert view.windows is not None
            assert [w.verdict for w in view.windows if w.stage_index == 1][-1] == "fail"
            assert [w.verdict for w in view.windows if w.stage_index == 0] == ["pass"] * len(
                [w for w in view.windows if w.stage_index == 0]
            )
            assert view.status_reason is not None
            assert view.status_reason.startswith("evidence against the canary: ")

    run(scenario)


def test_a_change_that_crashes_the_server_is_rolled_back_through_the_simulator_actuator(
    clock: ManualClock, fleet: SimulatedFleet
) -> None:
    hub = fleet.instances[0].control_url.split("/i/")[0]

    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet)
            body = rollout(ids, hub)
            body["changes"] = {"--max-num-seqs": "lots"}  # the engine refuses to start
            body["actuator"] = {"type": "simulator", "url": hub}
            workflow_id = (await harness.start(body)).workflow_id
            assert await harness.run_until(workflow_id, {"monitoring"}, step_s=STEP_S) == "monitoring"
            assert fleet.state("vllm-0")["state"] == "crashed"
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "rolled_back"
            assert fleet.state("vllm-0")["state"] == "running"
            assert fleet.state("vllm-0")["flags"] == {}
            view, _ = await harness.service.get(workflow_id)
            assert view.windows is not None
            assert [w.verdict for w in view.windows] == ["fail", "fail"]
            assert view.windows[0].scrape_errors == {"vllm-0": "upstream_unreachable"}
            assert view.windows[0].reasons == ["canary scrape failed: vllm-0 (upstream_unreachable)"]

    run(scenario)


def test_a_control_that_cannot_be_scraped_makes_windows_inconclusive_until_paused(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            assert await harness.run_until(workflow_id, {"monitoring"}, step_s=STEP_S) == "monitoring"
            fleet.set_faults("vllm-3", unreachable=True)
            assert await harness.run_until(workflow_id, DONE | {"paused"}, step_s=STEP_S) == "paused"
            view, _ = await harness.service.get(workflow_id)
            assert view.status_reason is not None
            assert view.status_reason.startswith("no window could be judged for ")
            assert view.status_reason.endswith(": control scrape failed: vllm-3 (upstream_unreachable)")
            assert view.windows is not None
            assert {w.verdict for w in view.windows} == {"inconclusive"}
            # Guardrails keep running while paused: a canary breach still rolls back.
            fleet.set_faults("vllm-3", unreachable=False)
            fleet.set_faults("vllm-0", error_burst=0.5)
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "rolled_back"
            final, _ = await harness.service.get(workflow_id)
            assert final.status_reason is not None
            assert final.status_reason.startswith("guardrail breach: critical: error_rate")

    run(scenario)


def test_failed_calls_are_retried_with_backoff_and_the_same_event_id(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    receiver.script.extend([503, 500])

    async def scenario() -> None:
        async with ReconcilerHarness(clock, webhook_retries=3, webhook_backoff_s=20.0) as harness:
            ids = await harness.register_fleet(fleet)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            assert await harness.run_until(workflow_id, {"applying"}, step_s=STEP_S) == "applying"
            started = clock()
            await harness.reconciler.tick()
            assert [d.status for d in receiver.deliveries] == [503]
            await harness.step(10.0)  # backoff 20 s: not yet
            assert len(receiver.deliveries) == 1
            await harness.step(10.0)
            assert [d.status for d in receiver.deliveries] == [503, 500]
            await harness.step(20.0)  # doubled: 40 s after the second attempt
            assert len(receiver.deliveries) == 2
            await harness.step(20.0)
            assert [d.status for d in receiver.deliveries] == [503, 500, 200]
            assert clock() - started == 60.0
            assert {d.payload["event_id"] for d in receiver.deliveries} == {outbox_event_id(workflow_id, "apply", 0)}
            assert len({d.body for d in receiver.deliveries}) == 1  # byte for byte the same call
            assert await harness.status(workflow_id) == "monitoring"
            row = await harness.workflows.outbox_get(outbox_event_id(workflow_id, "apply", 0))
            assert row is not None
            assert (row.state, row.attempts) == ("delivered", 3)

    run(scenario)


def test_an_actuator_that_keeps_failing_ends_failed_until_retry_rollback(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    receiver.script.extend([500] * 6)  # apply: 3 attempts; rollback: 3 attempts

    async def scenario() -> None:
        async with ReconcilerHarness(clock, webhook_retries=2, webhook_backoff_s=1.0) as harness:
            ids = await harness.register_fleet(fleet)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            assert await harness.run_until(workflow_id, DONE, step_s=5.0) == "failed"
            assert [(d.payload["action"], d.status) for d in receiver.deliveries] == [
                ("apply", 500),
                ("apply", 500),
                ("apply", 500),
                ("rollback", 500),
                ("rollback", 500),
                ("rollback", 500),
            ]
            view, _ = await harness.service.get(workflow_id)
            assert view.status_reason == (
                "rollback of stage 0 failed after 3 attempts (HTTP 500: {}); instances still changed: vllm-0"
            )
            assert view.changed_count == 1
            assert view.allowed_actions == ["abort", "retry-rollback"]
            events = await harness.service.events(workflow_id)
            assert [e.action for e in events if e.type == "transition"][-2:] == ["apply_failed", "rollback_failed"]
            for _ in range(5):  # failed waits for a human
                await harness.step(60.0)
            assert await harness.status(workflow_id) == "failed"
            await harness.service.act(workflow_id, UserAction.RETRY_ROLLBACK, actor="lead", reason="receiver fixed")
            assert await harness.run_until(workflow_id, DONE, step_s=5.0) == "rolled_back"
            rollbacks = [d for d in receiver.deliveries if d.payload["action"] == "rollback"]
            assert [d.status for d in rollbacks] == [500, 500, 500, 200]
            assert {d.payload["event_id"] for d in rollbacks} == {outbox_event_id(workflow_id, "rollback", 0)}

    run(scenario)


def test_an_abort_before_the_apply_call_was_sent_reverts_nothing(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet)
            workflow_id = (await harness.start(rollout(ids, receiver.url))).workflow_id
            assert await harness.run_until(workflow_id, {"applying"}, step_s=STEP_S) == "applying"
            await harness.service.act(workflow_id, UserAction.ABORT, actor="lead")
            assert await harness.run_until(workflow_id, DONE, step_s=STEP_S) == "rolled_back"
            assert receiver.deliveries == []
            events = await harness.service.events(workflow_id)
            skipped = [e for e in events if e.action == "rollback_step_done"]
            assert skipped[0].details["skipped"] == "its apply call never reached the actuator"

    run(scenario)


def test_approval_timeouts_cancel_or_roll_back(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            ids = await harness.register_fleet(fleet)
            waiting = await harness.start(rollout(ids[:2], receiver.url, approval={"required": True, "timeout_s": 100}))
            await harness.step(90.0)
            assert await harness.status(waiting.workflow_id) == "pending_approval"
            await harness.step(10.0)
            assert await harness.status(waiting.workflow_id) == "cancelled"
            gated = await harness.start(rollout(ids[2:], receiver.url, approval={"stage_gates": [1], "timeout_s": 50}))
            assert await harness.run_until(gated.workflow_id, {"awaiting_approval"}, step_s=STEP_S) == (
                "awaiting_approval"
            )
            assert await harness.run_until(gated.workflow_id, DONE, step_s=STEP_S) == "rolled_back"
            view, _ = await harness.service.get(gated.workflow_id)
            assert view.status_reason == "nobody approved within 50 s"
            assert calls(receiver) == [("apply", 0, ["vllm-2"]), ("rollback", 0, ["vllm-2"])]

    run(scenario)


def test_a_restarted_reconciler_continues_from_stored_deadlines(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver, tmp_path: Any
) -> None:
    database = str(tmp_path / "agent.db")

    async def scenario() -> None:
        async with ReconcilerHarness(clock, database=database) as first:
            ids = await first.register_fleet(fleet)
            workflow_id = (await first.start(rollout(ids, receiver.url))).workflow_id
            assert await first.run_until(workflow_id, {"monitoring"}, step_s=STEP_S) == "monitoring"
            stored = await first.workflows.get(workflow_id)
            assert stored is not None
            progress = stored.doc.progress
            assert progress is not None
        clock.advance(25.0)  # the agent is down for a while
        async with ReconcilerHarness(clock, database=database) as second:
            resumed = await second.workflows.get(workflow_id)
            assert resumed is not None
            assert resumed.doc.progress == progress  # the deadlines survive, nothing restarts the soak
            assert await second.run_until(workflow_id, DONE, step_s=STEP_S) == "completed"
            applies = [d.payload for d in receiver.accepted() if d.payload["action"] == "apply"]
            assert [p["stage_index"] for p in applies] == [0, 1, 2]  # stage 0 was not sent again
            view, _ = await second.service.get(workflow_id)
            assert view.windows is not None
            assert view.windows[0].started_at.timestamp() >= progress.warmup_until

    run(scenario)


@pytest.mark.parametrize("url", ["http://127.0.0.1:{closed}/hook", "http://no-such-receiver.invalid/hook"])
def test_an_apply_that_never_reached_the_actuator_releases_the_instances(
    clock: ManualClock, fleet: SimulatedFleet, url: str
) -> None:
    """A refused connection or a host that never resolves changed nothing: rolled back, instances free."""
    closed = free_port()

    async def scenario() -> None:
        async with ReconcilerHarness(clock, webhook_retries=1, webhook_backoff_s=1.0) as harness:
            ids = await harness.register_fleet(fleet)
            workflow_id = (await harness.start(rollout(ids, url.format(closed=closed)))).workflow_id
            assert await harness.run_until(workflow_id, DONE, step_s=5.0) == "rolled_back"
            view, _ = await harness.service.get(workflow_id)
            assert view.changed_count == 0
            events = await harness.service.events(workflow_id)
            skipped = [e for e in events if e.action == "rollback_step_done"]
            assert skipped[0].details["skipped"] == "its apply call never reached the actuator"
            assert [e.action for e in events if e.action == "rollback_failed"] == []
            assert [await harness.workflows.active_workflow_of(i) for i in ids] == [None] * len(ids)

    run(scenario)
