"""The story, told only through the agent's public HTTP API.

register -> collect -> analyze (KV pressure on the vLLM "chat" group) -> optimize -> roll the
recommended change out with approval -> completed; then a harmful change that the health gate
rolls back by itself, with the failed windows as evidence. Each step checks the answer it got
against what the story needs and raises `StepFailed` otherwise.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from performance_agent.demo.answers import (
    StepFailed,
    choose_recommendation,
    evidence_text,
    failed_windows,
    finding_of,
    progress_text,
    recommendation_line,
    require_status,
    snapshot_line,
    window_lines,
)
from performance_agent.demo.client import APPROVER
from performance_agent.demo.scenario import (
    CHAT_GROUP,
    GUARDRAILS,
    HARMFUL_CHANGE,
    JUDGE,
    MEMBERS,
    MONITOR,
    registration,
)

if TYPE_CHECKING:
    from performance_agent.demo.client import DemoClient
    from performance_agent.demo.console import Console
    from performance_agent.simulator import SimulatedFleet

__all__ = ("ENDED", "Story")

Json = dict[str, Any]
ENDED = frozenset({"completed", "rolled_back", "failed", "rejected", "cancelled", "paused"})
KV_PRESSURE = "kv_cache_pressure"
ROLLOUT_DEADLINE_S = 45.0
POLL_S = 0.25
SHOWN_RECOMMENDATIONS = 3
EVENT_REASON_WIDTH = 70


def _event_line(event: Json) -> str:
    moved = f"{event.get('from_status') or '(new)'} -> {event.get('to_status')}"
    why = str(event.get("reason") or event.get("comment") or "")
    if len(why) > EVENT_REASON_WIDTH:
        why = why[: EVENT_REASON_WIDTH - 3] + "..."
    return f"{event.get('action'):<20} {moved:<40} by {event.get('actor')}" + (f": {why}" if why else "")


def _flags(changes: object) -> str:
    return json.dumps(changes, separators=(", ", ": "))


class Story:
    def __init__(self, client: DemoClient, console: Console, fleet: SimulatedFleet, actuator_url: str) -> None:
        self.client = client
        self.console = console
        self.fleet = fleet
        self.actuator = {"type": "simulator", "url": actuator_url}
        self.chat = [m.instance_id for m in MEMBERS if m.group == CHAT_GROUP]
        self.kv_usage_before: float | None = None

    def run(self) -> None:
        self.register()
        self.collect()
        self.analyze()
        plan, recommendation = self.optimize()
        self.roll_out_recommendation(plan, recommendation)
        self.roll_out_harmful_change()

    # ----------------------------------------------------------------------------- steps
    def register(self) -> None:
        self.console.step("Register the servers with the agent")
        for member in MEMBERS:
            created = self.client.call("POST", "/api/v1/instances", registration(self.fleet, member), expect=201)
            labels = ", ".join(f"{k}={v}" for k, v in created["labels"].items())
            self.console.answer(
                201, f"{created['instance_id']}: {created['engine']} at {created['endpoint']} ({labels})"
            )
        listed = self.client.call("GET", "/api/v1/instances")
        if sorted(i["instance_id"] for i in listed) != sorted(m.instance_id for m in MEMBERS):
            raise StepFailed(f"GET /api/v1/instances lists {[i['instance_id'] for i in listed]}, not the fleet")
        self.console.answer(
            200, f"{len(listed)} instances registered; the background collector scrapes each every second"
        )

    def collect(self) -> None:
        self.console.step("Collect: scrape each server once now and read the normalized snapshot")
        for member in MEMBERS:
            handle = self.fleet.handle(member.instance_id)
            body = {"instance_id": member.instance_id, "endpoint": handle.endpoint, "metrics_path": handle.metrics_path}
            snapshot = self.client.call("POST", f"/api/v1/collect/{member.engine}", body)
            if snapshot.get("instance_id") != member.instance_id or snapshot.get("engine") != member.engine:
                raise StepFailed(
                    f"collect answered a snapshot of {snapshot.get('instance_id')} ({snapshot.get('engine')})"
                )
            self.console.answer(200, f"{member.instance_id}: {snapshot_line(snapshot)}")
            if member.instance_id == self.chat[0]:
                self.kv_usage_before = (snapshot.get("load") or {}).get("kv_cache_usage")

    def analyze(self) -> None:
        self.console.step("Analyze: look for bottlenecks over the last minute of every server")
        pressured = []
        for member in MEMBERS:
            body = {"instance_id": member.instance_id, "window_minutes": 1}
            report = self.client.call("POST", "/api/v1/analyze", body)
            self.console.answer(200, f"{member.instance_id}: {report.get('summary')}")
            finding = finding_of(report, KV_PRESSURE)
            if finding is not None:
                pressured.append(member.instance_id)
                self.console.detail(f"{finding['severity']} KV pressure: {evidence_text(finding)}")
        if pressured != self.chat:
            raise StepFailed(
                f"expected KV-cache pressure on exactly the {CHAT_GROUP} group {self.chat}, found it on {pressured}"
            )
        self.console.note(f"=> KV-cache pressure on the vLLM '{CHAT_GROUP}' group ({len(pressured)} servers) only.")

    def optimize(self) -> tuple[Json, Json]:
        self.console.step(f"Optimize: ask for a tuning plan for {self.chat[0]}")
        body = {"instance_id": self.chat[0], "objective": "balanced", "window_minutes": 1}
        plan = self.client.call("POST", "/api/v1/optimize", body)
        self.console.answer(200, f"plan {plan['plan_id']}: {plan.get('summary')}")
        for index, recommendation in enumerate(plan.get("recommendations", [])[:SHOWN_RECOMMENDATIONS], start=1):
            self.console.detail(f"{index}. {recommendation_line(recommendation)}")
        chosen = choose_recommendation(plan, KV_PRESSURE)
        self.console.note(f"=> rolling out '{chosen['id']}': {chosen.get('title')}")
        return plan, chosen

    def roll_out_recommendation(self, plan: Json, recommendation: Json) -> None:
        self.console.step(
            f"Roll the recommendation out to the {CHAT_GROUP} group, 10% -> 50% -> 100%, approval required"
        )
        body = {
            "instance_ids": self.chat,
            "plan_id": plan["plan_id"],
            "recommendation_ids": [recommendation["id"]],
            "description": f"demo: {recommendation.get('title')}",
            "approval": {"required": True},
            "monitor": MONITOR,
            "guardrails": GUARDRAILS,
            "judge": JUDGE,
            "actuator": self.actuator,
        }
        created = self.client.call("POST", "/api/v1/workflows", body, expect=201)
        require_status(created, "pending_approval")
        workflow_id = created["workflow_id"]
        self.console.answer(
            201,
            f"workflow {workflow_id}: {created['status']}, changes {_flags(created['changes'])},"
            f" stages {created['stages']}; nothing has changed yet",
        )
        path = f"/api/v1/workflows/{workflow_id}"
        approval = {"approver": "demo-lead", "comment": f"reviewed the plan: {recommendation['id']}; go"}
        approved = self.client.call("POST", f"{path}/approve", approval, role=APPROVER)
        require_status(approved, "capturing_baseline")
        self.console.answer(200, f"approved by {approved['approvals'][-1]['actor']}: {approved['status']}")
        done = self.watch(workflow_id)
        require_status(done, "completed")
        passed = sum(1 for window in done.get("windows") or [] if window.get("verdict") == "pass")
        self.console.answer(
            200, f"completed: {done['changed_count']} of {len(self.chat)} servers changed, {passed} healthy windows"
        )
        self.show_events(workflow_id)
        self.show_effect()

    def show_effect(self) -> None:
        handle = self.fleet.handle(self.chat[0])
        body = {"instance_id": self.chat[0], "endpoint": handle.endpoint, "metrics_path": handle.metrics_path}
        snapshot = self.client.call("POST", "/api/v1/collect/vllm", body)
        after = (snapshot.get("load") or {}).get("kv_cache_usage")
        self.console.answer(200, f"{self.chat[0]}: {snapshot_line(snapshot)}")
        before = self.kv_usage_before
        if not isinstance(after, int | float) or not isinstance(before, int | float) or after >= before:
            raise StepFailed(f"KV cache usage of {self.chat[0]} did not fall after the rollout ({before} -> {after})")
        self.console.note(f"=> KV cache usage of {self.chat[0]}: {before:.0%} before, {after:.0%} after.")

    def roll_out_harmful_change(self) -> None:
        self.console.step("A harmful change: cap the chat group at 4 concurrent sequences (no approval asked)")
        body = {
            "instance_ids": self.chat,
            "changes": HARMFUL_CHANGE,
            "description": "demo: cap concurrent sequences to cut inter-token latency",
            "monitor": MONITOR,
            "guardrails": GUARDRAILS,
            "judge": JUDGE,
            "actuator": self.actuator,
        }
        created = self.client.call("POST", "/api/v1/workflows", body, expect=201)
        require_status(created, "capturing_baseline")
        workflow_id = created["workflow_id"]
        self.console.answer(201, f"workflow {workflow_id}: {created['status']}, changes {_flags(created['changes'])}")
        done = self.watch(workflow_id)
        require_status(done, "rolled_back")
        if done.get("changed_count") != 0:
            raise StepFailed(f"the rolled-back workflow still counts {done.get('changed_count')} changed servers")
        self.console.answer(200, f"rolled back automatically: {done.get('status_reason')}")
        failed = failed_windows(done)
        if not failed:
            raise StepFailed("the workflow rolled back without a failed health window to show for it")
        self.console.note("Evidence: the failed health windows (canary = changed servers, reference = the others)")
        for window in failed:
            for text in window_lines(window):
                self.console.detail(text)
        self.show_events(workflow_id)

    # --------------------------------------------------------------------------- helpers
    def watch(self, workflow_id: str) -> Json:
        """Poll the workflow, showing one progress line, until it ends (or pauses: the story never expects that)."""
        path = f"/api/v1/workflows/{workflow_id}"
        self.console.request("GET", path)
        self.console.note(f"(polled every {POLL_S} s until the workflow ends)")
        started = time.monotonic()
        while True:
            workflow: Json = self.client.call("GET", path, show=False)
            windows = workflow.get("windows") or []
            key = (workflow.get("status"), workflow.get("stage_index"), len(windows))
            self.console.progress(progress_text(workflow, time.monotonic() - started), key)
            if workflow.get("status") in ENDED:
                self.console.finish_progress()
                return workflow
            if time.monotonic() - started > ROLLOUT_DEADLINE_S:
                self.console.finish_progress()
                raise StepFailed(
                    f"workflow {workflow_id} did not end within {ROLLOUT_DEADLINE_S:.0f} s"
                    f" (still {workflow.get('status')}: {workflow.get('status_reason')})"
                )
            time.sleep(POLL_S)

    def show_events(self, workflow_id: str) -> None:
        events = self.client.call("GET", f"/api/v1/workflows/{workflow_id}/events")
        self.console.answer(200, f"audit trail: {len(events)} events")
        for event in events:
            self.console.detail(_event_line(event))
