"""Rollouts end to end: the agent under uvicorn, simulated vLLM servers, a webhook receiver that deploys.

The receiver checks every call's signature the way a real one would and applies the payload to
the simulated fleet, so the agent's health gate judges real metric pages of changed and
unchanged servers. The fleet runs 40 times faster than the wall clock, so a 20-second health
window takes half a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.outbound.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from performance_agent.simulator.fleet import start_simulator
from performance_agent.workflows.state import outbox_event_id
from tests.rollout_support import APPROVER, AgentProcess, OffsetClock, WebhookReceiver, fleet_forwarder

if TYPE_CHECKING:
    from collections.abc import Iterator

    from performance_agent.simulator.fleet import SimulatedFleet

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret-0123"
TIME_SCALE = 40.0
MONITOR = {"duration_s": 1.5, "interval_s": 0.5, "warmup_s": 1.0, "min_passing_windows": 2}
GUARDRAILS = {
    "min_samples": 100,
    "max_ttft_p99_increase": 1.5,
    "max_itl_p99_increase": 0.5,
    "max_e2e_p99_increase": 0.5,
}
ENDED = {"completed", "rolled_back", "failed", "rejected", "cancelled"}


@pytest.fixture(scope="module")
def fleet() -> Iterator[SimulatedFleet]:
    clock = OffsetClock()
    with start_simulator("vllm", 9, time_scale=TIME_SCALE, clock=clock, flags={"max_num_seqs": 256}) as running:
        clock.advance(5.0)  # 200 simulated seconds of traffic: warm servers before any rollout
        yield running


@pytest.fixture(scope="module")
def receiver(fleet: SimulatedFleet) -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(forward=fleet_forwarder(fleet)).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, fleet: SimulatedFleet) -> Iterator[AgentProcess]:
    directory = tmp_path_factory.mktemp("rollout-agent")
    running = AgentProcess(directory / "agent.db", directory / "agent.log", SECRET)
    running.register(fleet, [handle.instance_id for handle in fleet.instances], max_num_seqs=256)
    yield running
    running.stop()


def rollout(ids: list[str], url: str, changes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "instance_ids": ids,
        "changes": changes,
        "actuator": {"type": "webhook", "url": url},
        "monitor": MONITOR,
        "guardrails": GUARDRAILS,
        **extra,
    }


def deliveries_of(receiver: WebhookReceiver, workflow_id: str) -> list[dict[str, Any]]:
    found = []
    for delivery in receiver.accepted():
        payload = delivery.payload
        if payload["workflow_id"] != workflow_id:
            continue
        assert verify_signature(
            SECRET, delivery.headers[TIMESTAMP_HEADER], delivery.headers[SIGNATURE_HEADER], delivery.body
        ), "every call is signed with the configured secret"
        assert delivery.headers["Content-Type"] == "application/json"
        found.append(payload)
    return found


def test_a_good_change_goes_10_50_100_with_approvals(
    agent: AgentProcess, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    ids = ["vllm-0", "vllm-1", "vllm-2", "vllm-3"]
    body = rollout(ids, receiver.url, {"max_num_seqs": 192}, approval={"required": True, "stage_gates": [2]})
    created = agent.post("/api/v1/workflows", body, headers={"Idempotency-Key": "good-1"})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflow_id"]
    assert created.json()["status"] == "pending_approval"
    path = f"/api/v1/workflows/{workflow_id}"
    assert agent.post(f"{path}/approve", {"comment": "start"}, headers=APPROVER).json()["status"] == (
        "capturing_baseline"
    )
    held = agent.wait_status(workflow_id, {"awaiting_approval"} | ENDED)
    assert held["status"] == "awaiting_approval", held["status_reason"]
    assert (held["stage_index"], held["changed_count"], held["percent"]) == (1, 2, 50)
    assert held["cohorts"] == {"canary": ["vllm-0", "vllm-1"], "control": ["vllm-2", "vllm-3"]}
    approved = agent.post(f"{path}/approve", {"comment": "stage 2"}, headers=APPROVER)
    assert approved.status_code == 200
    done = agent.wait_status(workflow_id, ENDED)
    assert done["status"] == "completed", done["status_reason"]
    assert [a["actor"] for a in done["approvals"]] == ["lead", "lead"]
    assert [a["gate"] for a in done["approvals"]] == [0, 2]
    calls = deliveries_of(receiver, workflow_id)
    assert [(c["action"], c["stage_index"], c["percent"], c["instance_ids"]) for c in calls] == [
        ("apply", 0, 10, ["vllm-0"]),
        ("apply", 1, 50, ["vllm-1"]),
        ("apply", 2, 100, ["vllm-2", "vllm-3"]),
    ]
    for call in calls:
        assert call["event_id"] == outbox_event_id(workflow_id, "apply", call["stage_index"])
        assert call["changes"] == {"max_num_seqs": 192}
        assert call["env"] == {}
        assert call["engine"] == "vllm"
        assert set(call["previous"]) == set(call["instance_ids"])
    assert all(fleet.state(i)["flags"] == {"--max-num-seqs": 192} for i in ids)
    assert done["baseline"]["figures"]["instances"] == 4
    assert {w["stage_index"] for w in done["windows"] if w["verdict"] == "pass"} == {0, 1, 2}
    events = agent.get(f"{path}/events").json()
    assert [(e["action"], e["actor"]) for e in events if e["type"] != "transition"] == [
        ("create", "ops"),
        ("approve", "lead"),
        ("approve", "lead"),
    ]
    replay = agent.post("/api/v1/workflows", body, headers={"Idempotency-Key": "good-1"})
    assert replay.json()["workflow_id"] == workflow_id  # the same key never starts a second rollout
    metrics = agent.get("/metrics").text
    assert 'performance_agent_workflow_stage_duration_seconds_count{outcome="advanced"}' in metrics
    assert 'performance_agent_workflow_approval_wait_seconds_count{gate="stage",outcome="approved"} 1.0' in metrics
    assert 'performance_agent_workflow_windows_total{verdict="pass"}' in metrics


def test_a_regressing_change_is_rolled_back_automatically_in_its_first_stage(
    agent: AgentProcess, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    ids = ["vllm-4", "vllm-5", "vllm-6", "vllm-7"]
    for instance_id in ids:  # heavy tails do not hide a harmful change (they make harmless ones trip today's gate)
        fleet.set_shape(instance_id, preset="heavy-tailed")
    restarts = {i: fleet.state(i)["restarts"] for i in ids}
    created = agent.post("/api/v1/workflows", rollout(ids, receiver.url, {"max_num_seqs": 2}))
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflow_id"]
    done = agent.wait_status(workflow_id, ENDED)
    assert done["status"] == "rolled_back", done["status_reason"]
    assert done["stage_index"] == 0
    assert done["status_reason"].startswith("evidence against the canary: ")
    assert "throughput beyond max_throughput_decrease" in done["status_reason"]
    calls = deliveries_of(receiver, workflow_id)
    assert [(c["action"], c["stage_index"], c["instance_ids"]) for c in calls] == [
        ("apply", 0, ["vllm-4"]),
        ("rollback", 0, ["vllm-4"]),
    ]
    assert calls[1]["previous"] == {"vllm-4": {"max_num_seqs": 256}}
    assert fleet.state("vllm-4")["flags"] == {"--max-num-seqs": 256}
    assert all(fleet.state(i)["restarts"] == restarts[i] for i in ids[1:])  # the control was never touched
    assert [w["verdict"] for w in done["windows"]] == ["fail"]  # the first judged window holds enough evidence
    evidence = done["windows"][-1]["evidence"]
    assert evidence["decision"] == "rollback"
    assert [m["metric"] for m in evidence["metrics"] if m["exceeded"]] != []
    metrics = agent.get("/metrics").text
    assert 'performance_agent_workflow_rollbacks_total{reason="evidence"}' in metrics


def test_a_rejected_change_changes_nothing(
    agent: AgentProcess, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    before = fleet.state("vllm-8")
    created = agent.post(
        "/api/v1/workflows", rollout(["vllm-8"], receiver.url, {"max_num_seqs": 64}, approval={"required": True})
    )
    workflow_id = created.json()["workflow_id"]
    rejected = agent.post(f"/api/v1/workflows/{workflow_id}/reject", {"comment": "not this week"}, headers=APPROVER)
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["finished_at"] is not None
    again = agent.post(f"/api/v1/workflows/{workflow_id}/approve", {}, headers=APPROVER)
    assert again.status_code == 409
    assert again.json()["error"] == "invalid_transition"
    assert deliveries_of(receiver, workflow_id) == []
    after = fleet.state("vllm-8")
    assert (after["restarts"], after["flags"]) == (before["restarts"], before["flags"])
    listed = agent.get("/api/v1/workflows", status="rejected").json()
    assert [w["workflow_id"] for w in listed] == [workflow_id]
    events = agent.get(f"/api/v1/workflows/{workflow_id}/events").json()
    assert [(e["action"], e["actor"], e["comment"]) for e in events] == [
        ("create", "ops", None),
        ("reject", "lead", "not this week"),
    ]


def test_the_reconciler_ran_throughout_without_a_crash(agent: AgentProcess) -> None:
    """Every rollout above was driven by one reconciler loop that never crashed or restarted."""
    checks = {check["name"]: check for check in agent.get("/api/v1/health/detailed").json()["checks"]}
    reconciler = checks["loop:workflow-reconciler"]
    assert reconciler["status"] == "healthy"
    assert reconciler["detail"].endswith(", 0 restarts")
    assert "Traceback" not in agent.log.read_text()
