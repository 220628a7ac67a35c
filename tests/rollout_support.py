"""Shared pieces of the rollout tests: a webhook receiver that records deliveries, and a reconciler harness.

The receiver is a real HTTP server on 127.0.0.1, so the agent's guard, pinned client, signing
and retries are exercised exactly as in production. The harness assembles an agent's workflow
parts on an in-memory database with one `ManualClock` shared by the reconciler and a simulated
fleet: a test moves time by hand and calls `tick()`; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from performance_agent.clock import utc
from performance_agent.composition import build_agent
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.security import ApiKeyRing
from tests.agent_process import ServedAgent, free_port, wait_for
from tests.conftest import make_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from performance_agent.simulator.fleet import ManualClock, SimulatedFleet
    from performance_agent.workflows.reconciler import Reconciler
    from performance_agent.workflows.schemas import Workflow

__all__ = (
    "APPROVER",
    "OPERATOR",
    "AgentProcess",
    "Delivery",
    "OffsetClock",
    "ReconcilerHarness",
    "WebhookReceiver",
    "fleet_forwarder",
    "free_port",
    "wait_for",
)


@dataclass(frozen=True, slots=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


@dataclass(slots=True)
class WebhookReceiver:
    """Answers each POST with the next scripted status (200 once the script is used up) and records it.

    `forward` is called with every accepted payload (e.g. to apply it to a simulated fleet), so a
    webhook rollout really changes servers.
    """

    script: list[int] = field(default_factory=list)
    forward: Callable[[dict[str, Any]], None] | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.deliveries.append(Delivery(self.path, dict(self.headers.items()), body, status))
                if status == 200 and receiver.forward is not None:
                    receiver.forward(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [delivery for delivery in self.deliveries if delivery.status == 200]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def fleet_forwarder(fleet: SimulatedFleet) -> Callable[[dict[str, Any]], None]:
    """Applies a webhook payload to the simulated fleet, as a real deployment system would."""

    def forward(payload: dict[str, Any]) -> None:
        for instance_id in payload["instance_ids"]:
            if payload["action"] == "apply":
                fleet.apply(instance_id, payload["changes"], payload["env"])
            else:
                declared = payload["previous"].get(instance_id) or {}
                fleet.apply(instance_id, {flag: declared.get(flag) for flag in payload["changes"]}, {})

    return forward


class ReconcilerHarness:
    """An agent's workflow parts on `:memory:` (or `database=`), driven by `clock` (shared with the fleet)."""

    def __init__(self, clock: ManualClock, **settings: Any) -> None:
        self.clock = clock
        base: dict[str, Any] = {"webhook_retries": 2, "webhook_backoff_s": 1.0, "scrape_background": False}
        base.update(settings)
        self.settings = make_settings(**base)
        self.agent = build_agent(self.settings, ApiKeyRing([]), clock=clock)
        self.workflows = self.agent.storage.workflows
        self.reconciler: Reconciler = self.agent.reconciler
        self.service = self.agent.workflows

    async def __aenter__(self) -> ReconcilerHarness:
        await self.agent.storage.open()  # storage only: the test drives the reconciler itself
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.agent.clients.aclose()
        await self.agent.storage.close()

    async def register_fleet(self, fleet: SimulatedFleet, **engine_args: object) -> list[str]:
        ids = []
        for handle in fleet.instances:
            spec = msgspec.convert(
                {
                    "engine": handle.engine,
                    "endpoint": handle.endpoint,
                    "metrics_path": handle.metrics_path,
                    "engine_args": engine_args,
                },
                InstanceSpec,
            )
            await self.agent.instances.create(handle.instance_id, spec, utc(self.clock()))
            ids.append(handle.instance_id)
        return ids

    async def start(self, body: dict[str, Any], actor: str = "ops") -> Workflow:
        from performance_agent.workflows.schemas import WorkflowCreate

        result = await self.service.create(msgspec.convert(body, WorkflowCreate), actor=actor, idempotency_key=None)
        return result.workflow

    async def status(self, workflow_id: str) -> str:
        stored = await self.workflows.get(workflow_id)
        assert stored is not None
        return stored.doc.status

    async def step(self, seconds: float) -> None:
        """Move time by `seconds` and run one reconciler tick."""
        self.clock.advance(seconds)
        await self.reconciler.tick()

    async def run_until(self, workflow_id: str, statuses: set[str], *, step_s: float, max_steps: int = 200) -> str:
        """Tick every `step_s` until the workflow reaches one of `statuses`; fails after `max_steps`."""
        seen: list[str] = []
        for _ in range(max_steps):
            status = await self.status(workflow_id)
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in statuses:
                return status
            await self.step(step_s)
        raise AssertionError(f"never reached {sorted(statuses)}; went through {seen}")


# --------------------------------------------------------------------------- e2e (uvicorn)

OPERATOR_KEY = "rollout-operator-key-0123456789"
APPROVER_KEY = "rollout-approver-key-0123456789"
AGENT_KEYS = f"ops:operator:{OPERATOR_KEY},lead:approver:{APPROVER_KEY}"
OPERATOR = {"X-API-Key": OPERATOR_KEY}
APPROVER = {"X-API-Key": APPROVER_KEY}


class OffsetClock:
    """Wall time plus an offset a test can move forward: warms a simulated fleet without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class AgentProcess(ServedAgent):
    """An agent set up for rollouts: signed webhooks, fast reconciler ticks, scrapes on demand only."""

    def __init__(self, database: Path, log: Path, secret: str, port: int | None = None, **settings: str) -> None:
        super().__init__(
            database,
            log,
            headers=OPERATOR,
            port=port,
            settings={
                "PERF_AGENT_API_KEYS": AGENT_KEYS,
                "PERF_AGENT_SCRAPE_BACKGROUND": "false",
                "PERF_AGENT_WEBHOOK_SECRET": secret,
                "PERF_AGENT_WEBHOOK_TIMEOUT_S": "2",
                "PERF_AGENT_WEBHOOK_BACKOFF_S": "0.2",
                "PERF_AGENT_WORKFLOW_TICK_S": "0.05",
                **settings,
            },
        )

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        response = self.get(f"/api/v1/workflows/{workflow_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def wait_status(self, workflow_id: str, statuses: set[str], deadline_s: float = 60.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            workflow = self.workflow(workflow_id)
            return workflow if workflow["status"] in statuses else None

        found: dict[str, Any] = wait_for(reached, f"workflow {workflow_id} to reach {sorted(statuses)}", deadline_s)
        return found

    def register(self, fleet: SimulatedFleet, ids: list[str], **engine_args: object) -> None:
        for instance_id in ids:
            handle = fleet.handle(instance_id)
            response = self.post(
                "/api/v1/instances",
                {
                    "instance_id": instance_id,
                    "engine": handle.engine,
                    "endpoint": handle.endpoint,
                    "metrics_path": handle.metrics_path,
                    "engine_args": engine_args,
                },
            )
            assert response.status_code == 201, response.text


@contextlib.contextmanager
def coverage_paused() -> Iterator[None]:
    """Simulated servers run in the test process; under coverage's tracer they answer scrapes too slowly
    (baselines time out). Agents under test are their own processes and are still measured."""
    import coverage

    current = coverage.Coverage.current()
    if current is not None:
        current.stop()
    try:
        yield
    finally:
        if current is not None:
            current.start()
