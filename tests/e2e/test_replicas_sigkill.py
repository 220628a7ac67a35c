"""Three agent replicas on one PostgreSQL database roll out 30 changes while replicas are killed.

Each replica is `python -m performance_agent serve` (uvicorn) on its own port; the workflows are
started through different replicas; while they run, the leader and then other replicas are
killed with SIGKILL at random (seeded) moments and started again with new identities. Every
workflow must still end `completed` or, for the harmful changes, `rolled_back`; each stage's apply or rollback
must reach the actuator under exactly one event id; every audit trail must be whole; and an
approval sent to two replicas at once must have exactly one winner.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from performance_agent.simulator.fleet import start_simulator
from performance_agent.workflows.state import outbox_event_id
from tests.postgres_support import fresh_database_url
from tests.rollout_support import (
    AGENT_KEYS,
    APPROVER,
    AgentProcess,
    OffsetClock,
    WebhookReceiver,
    coverage_paused,
    fleet_forwarder,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.e2e

SECRET = "e2e-replicas-secret-0123"
SECOND_APPROVER_KEY = "rollout-second-approver-key-0123"
#: Two approvers: the same approver repeating an approval is answered 200 and recorded once.
KEYS = f"{AGENT_KEYS},second:approver:{SECOND_APPROVER_KEY}"
SECOND_APPROVER = {"X-API-Key": SECOND_APPROVER_KEY}
REPLICAS = 3
WORKFLOWS = 30
HARMFUL = set(range(0, WORKFLOWS, 5))  # 6 of the 30 halve the batch size to 2: rolled back
SERVERS_PER_WORKFLOW = 2
LEASE_TTL_S = 3.0
ENDED = {"completed", "rolled_back", "failed", "rejected", "cancelled"}
TIME_SCALE = 20.0  # 60 servers simulated in this process: 20 simulated seconds per second is what 2 cores keep up with
MONITOR = {"duration_s": 2.0, "interval_s": 1.0, "warmup_s": 1.0, "min_passing_windows": 2}
# A harmful canary (batch size 2) completes few requests: the pooled floor must stay below what it serves
# in a stage, or a stage with little evidence pauses for traffic instead of rolling back.
GUARDRAILS = {"min_samples": 50, "max_ttft_p99_increase": 1.5, "max_itl_p99_increase": 0.5}


@pytest.fixture(autouse=True)
def untraced() -> Iterator[None]:
    """60 simulated servers run in this process (see `coverage_paused`)."""
    with coverage_paused():
        yield


class Replicas:
    """The three agent processes; a killed one is replaced by a new process (a new replica id)."""

    def __init__(self, workdir: Path, url: str) -> None:
        self._workdir = workdir
        self.url = url
        self._starts = 0
        self.lock = threading.Lock()
        self.agents: list[AgentProcess] = [self._start() for _ in range(REPLICAS)]
        self.kills: list[str] = []

    def _start(self) -> AgentProcess:
        self._starts += 1
        log = self._workdir / f"replica-{self._starts}.log"
        return AgentProcess(
            self._workdir / "unused.db",
            log,
            SECRET,
            PERF_AGENT_DATABASE_URL=self.url,
            PERF_AGENT_API_KEYS=KEYS,
            PERF_AGENT_LEASE_TTL_S=str(LEASE_TTL_S),
            PERF_AGENT_WORKFLOW_TICK_S="0.1",
            PERF_AGENT_WEBHOOK_TIMEOUT_S="5",
            PERF_AGENT_SCRAPE_TIMEOUT_S="10",
        )

    def any(self, index: int) -> AgentProcess:
        with self.lock:
            return self.agents[index % len(self.agents)]

    def leader_index(self) -> int | None:
        with self.lock:
            agents = list(self.agents)
        for index, agent in enumerate(agents):
            with_retry = agent.get("/api/v1/health/detailed")
            replica = with_retry.json()["replica"]
            if replica["role"] == "leader":
                return index
        return None

    def kill_and_restart(self, index: int, down_s: float) -> None:
        with self.lock:
            victim = self.agents[index]
        replica_id = victim.get("/api/v1/health/detailed").json()["replica"]["replica_id"]
        victim.kill()
        self.kills.append(replica_id)
        time.sleep(down_s)
        replacement = self._start()
        with self.lock:
            self.agents[index] = replacement

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()


def _body(ids: list[str], url: str, harmful: bool, **extra: Any) -> dict[str, Any]:
    return {
        "instance_ids": ids,
        "changes": {"max_num_seqs": 2 if harmful else 192},
        "actuator": {"type": "webhook", "url": url},
        "monitor": MONITOR,
        "guardrails": GUARDRAILS,
        **extra,
    }


def _found(index: int | None) -> tuple[int] | None:
    """`wait_for` waits for a truthy answer, and replica 0 is a falsy index."""
    return None if index is None else (index,)


def _get(replicas: Replicas, index: int, path: str) -> httpx.Response:
    """From a live replica: one being killed right now is skipped for the next one."""
    for attempt in range(REPLICAS * 4):
        try:
            return replicas.any(index + attempt).get(path)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"no replica answered GET {path}")


def test_three_replicas_finish_every_rollout_through_sigkills(tmp_path: Path) -> None:
    clock = OffsetClock()
    count = WORKFLOWS * SERVERS_PER_WORKFLOW
    with start_simulator("vllm", count, time_scale=TIME_SCALE, clock=clock, flags={"max_num_seqs": 256}) as fleet:
        clock.advance(5.0)
        receiver = WebhookReceiver(forward=fleet_forwarder(fleet)).start()
        replicas = Replicas(tmp_path, fresh_database_url())
        try:
            ids = [handle.instance_id for handle in fleet.instances]
            replicas.any(0).register(fleet, ids, max_num_seqs=256)
            groups = [ids[i * SERVERS_PER_WORKFLOW : (i + 1) * SERVERS_PER_WORKFLOW] for i in range(WORKFLOWS)]
            for number in HARMFUL:
                for instance_id in groups[number]:
                    fleet.set_shape(instance_id, preset="heavy-tailed")

            # One workflow waits for a human: its approval goes to two replicas at the same moment.
            gated = replicas.any(1).post(
                "/api/v1/workflows", _body(groups[1], receiver.url, False, approval={"required": True})
            )
            assert gated.status_code == 201, gated.text
            gated_id = gated.json()["workflow_id"]
            wait_for(
                lambda: replicas.any(2).workflow(gated_id)["status"] == "pending_approval" or None,
                "the gated workflow to wait for approval",
            )
            with ThreadPoolExecutor(2) as pool:
                answers = list(
                    pool.map(
                        lambda sent: replicas.any(sent[0]).post(
                            f"/api/v1/workflows/{gated_id}/approve", {"comment": "go"}, headers=sent[1]
                        ),
                        [(0, APPROVER), (2, SECOND_APPROVER)],
                    )
                )
            assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]

            started = {gated_id: 1}
            for number, group in enumerate(groups):
                if number == 1:
                    continue
                created = replicas.any(number).post("/api/v1/workflows", _body(group, receiver.url, number in HARMFUL))
                assert created.status_code == 201, created.text
                started[created.json()["workflow_id"]] = number

            rng = random.Random(20261203)
            time.sleep(rng.uniform(1.0, 3.0))
            (leader,) = wait_for(lambda: _found(replicas.leader_index()), "a leader")
            replicas.kill_and_restart(leader, down_s=rng.uniform(0.2, 1.5))  # the leader first
            for _ in range(2):
                time.sleep(rng.uniform(2.0, 5.0))
                replicas.kill_and_restart(rng.randrange(REPLICAS), down_s=rng.uniform(0.2, 1.5))

            last: dict[str, dict[str, Any]] = {}

            def all_ended() -> dict[str, dict[str, Any]] | None:
                found = {wid: _get(replicas, n, f"/api/v1/workflows/{wid}").json() for wid, n in started.items()}
                last.update(found)
                return found if all(w["status"] in ENDED for w in found.values()) else None

            try:
                ended = wait_for(all_ended, "every workflow to end", 150.0)
            except AssertionError:
                stuck = {
                    wid: (started[wid], w["status"], w["stage_index"], w.get("status_reason"))
                    for wid, w in last.items()
                    if w["status"] not in ENDED
                }
                raise AssertionError(f"not ended: {stuck}; kills: {replicas.kills}") from None
        finally:
            replicas.stop()
            receiver.stop()

    expected = {wid: "rolled_back" if number in HARMFUL else "completed" for wid, number in started.items()}
    assert {wid: w["status"] for wid, w in ended.items()} == expected, {
        wid: w["status_reason"] for wid, w in ended.items() if w["status"] != expected[wid]
    }
    calls: dict[tuple[str, str, int], set[str]] = {}
    for delivery in receiver.accepted():
        payload = delivery.payload
        key = (payload["workflow_id"], payload["action"], payload["stage_index"])
        calls.setdefault(key, set()).add(payload["event_id"])
    for (workflow_id, action, stage), event_ids in calls.items():  # a retry of one event id is fine
        assert event_ids == {outbox_event_id(workflow_id, action, stage)}, (workflow_id, action, stage, event_ids)
    applies = {(workflow_id, stage) for workflow_id, action, stage in calls if action == "apply"}
    rolled_back = {workflow_id for workflow_id, action, _ in calls if action == "rollback"}
    assert rolled_back == {wid for wid, number in started.items() if number in HARMFUL}

    survivor = AgentProcess(
        tmp_path / "unused.db", tmp_path / "auditor.log", SECRET, PERF_AGENT_DATABASE_URL=replicas.url
    )
    try:
        for workflow_id, workflow in ended.items():
            events = survivor.get(f"/api/v1/workflows/{workflow_id}/events").json()
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert events[0]["type"] == "created"
            assert events[-1]["to_status"] == workflow["status"]
            applied = [e["stage_index"] for e in events if e["action"] == "stage_applied"]
            assert len(applied) == len(set(applied)), (workflow_id, applied)  # no stage applied twice
            delivered = {stage for wid, stage in applies if wid == workflow_id}
            assert delivered <= set(applied), (workflow_id, applied, delivered)  # no call without its event
            if workflow["status"] == "completed":
                assert applied == [0, 1, 2]  # (stage 1 of two servers changes nobody new: no call)
    finally:
        survivor.stop()
    assert len(replicas.kills) == 3
