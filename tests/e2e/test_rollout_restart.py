"""The agent is killed with SIGKILL in the middle of a rollout and started again on the same database.

The workflow must carry on from what was stored (its stage, windows and deadlines), finish, and
never deliver a stage's apply call under a new `event_id`: a receiver de-duplicating on it would
otherwise apply the same stage twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pytest

from performance_agent.simulator.fleet import start_simulator
from performance_agent.workflows.state import outbox_event_id
from tests.rollout_support import AgentProcess, OffsetClock, WebhookReceiver, fleet_forwarder, wait_for

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

SECRET = "e2e-restart-secret-0123"
ENDED = {"completed", "rolled_back", "failed", "rejected", "cancelled"}


def test_a_rollout_survives_sigkill_mid_monitoring(tmp_path: Path) -> None:
    clock = OffsetClock()
    with start_simulator("vllm", 4, time_scale=40.0, clock=clock, flags={"max_num_seqs": 256}) as fleet:
        clock.advance(5.0)
        receiver = WebhookReceiver(forward=fleet_forwarder(fleet)).start()
        database, log = tmp_path / "agent.db", tmp_path / "agent.log"
        first = AgentProcess(database, log, SECRET)
        second: AgentProcess | None = None
        try:
            ids = [handle.instance_id for handle in fleet.instances]
            first.register(fleet, ids, max_num_seqs=256)
            body = {
                "instance_ids": ids,
                "changes": {"max_num_seqs": 160},
                "actuator": {"type": "webhook", "url": receiver.url},
                "monitor": {"duration_s": 2.5, "interval_s": 0.5, "warmup_s": 0.5, "min_passing_windows": 2},
                "guardrails": {
                    "min_samples": 100,
                    "max_ttft_p99_increase": 1.5,
                    "max_itl_p99_increase": 0.5,
                    "max_e2e_p99_increase": 0.5,
                },
            }
            created = first.post("/api/v1/workflows", body)
            assert created.status_code == 201, created.text
            workflow_id = created.json()["workflow_id"]
            path = f"/api/v1/workflows/{workflow_id}"

            def mid_monitoring() -> dict[str, object] | None:
                workflow = first.workflow(workflow_id)
                assert workflow["status"] not in ENDED, workflow["status_reason"]
                in_stage_0 = workflow["status"] == "monitoring" and workflow["stage_index"] == 0
                return workflow if in_stage_0 and workflow["windows"] else None

            before = wait_for(mid_monitoring, "a health window of stage 0")
            first.kill()
            applies_before_kill = [d.payload for d in receiver.accepted() if d.payload["action"] == "apply"]
            assert [p["stage_index"] for p in applies_before_kill] == [0]

            second = AgentProcess(database, log, SECRET)
            resumed = second.workflow(workflow_id)
            assert resumed["stage_deadline"] == before["stage_deadline"]  # deadlines come from storage
            assert resumed["windows"][: len(before["windows"])] == before["windows"]
            done = second.wait_status(workflow_id, ENDED)
            assert done["status"] == "completed", done["status_reason"]

            by_stage: dict[int, set[str]] = {}
            for delivery in receiver.accepted():
                payload = delivery.payload
                if payload["action"] == "apply":
                    by_stage.setdefault(payload["stage_index"], set()).add(payload["event_id"])
            assert by_stage == {stage: {outbox_event_id(workflow_id, "apply", stage)} for stage in (0, 1, 2)}
            assert all(fleet.state(i)["flags"] == {"--max-num-seqs": 160} for i in ids)

            events = second.get(f"{path}/events").json()
            applied = [e["stage_index"] for e in events if e["action"] == "stage_applied"]
            assert applied == [0, 1, 2]  # no stage was applied twice
            left_stage_0 = next(e for e in events if e["action"] == "analysis_passed" and e["stage_index"] == 1)
            deadline = datetime.fromisoformat(str(before["stage_deadline"]))
            assert datetime.fromisoformat(left_stage_0["at"]) >= deadline
        finally:
            for agent in (second, first):
                if agent is not None:
                    agent.stop()
            receiver.stop()
