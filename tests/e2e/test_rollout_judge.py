"""The sequential judge end to end, on heavy-tailed servers: harmless changes complete, harmful ones roll back.

The agent runs under uvicorn with default stages (10% → 50% → 100%) of 40 s, judged every 4 s
with the default judge (alpha 0.05, 1,000 canary requests per stage). The servers are simulated
vLLM with the `heavy-tailed` latency shape (lognormal sigma 0.5, 7% of requests 6x slower), each
with its own random stream, in real time (time scale 1), so a canary of one server at 30
requests/s serves about 120 requests a window, as in issue 10's evaluation. All rollouts run at
once on disjoint servers (an instance takes part in one active workflow at a time), which keeps
the test near four minutes and also checks that concurrent rollouts do not disturb each other's
verdicts (the old per-window p99 rule rolled back 7 of 8 harmless rollouts run four at a time).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.simulator.fleet import SimulatedFleet, build_specs
from performance_agent.simulator.instance import REGRESSION_ENV
from performance_agent.simulator.load_model import Workload
from tests.rollout_support import AgentProcess, OffsetClock, WebhookReceiver, coverage_paused

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.e2e

SECRET = "e2e-judge-secret-0123"
SERVERS_PER_ROLLOUT = 8
HARMLESS = 10
REGRESSIONS = 3
MONITOR = {"duration_s": 40, "interval_s": 4, "warmup_s": 10}  # a restarted server settles (KV cache, queue) first
ENDED = {"completed", "rolled_back", "failed", "rejected", "cancelled", "paused"}
#: Wall seconds a rollout may take: baseline, three 40 s stages, extensions if traffic is short.
DEADLINE_S = 330.0


def _ids(prefix: str, group: int) -> list[str]:
    return [f"{prefix}-{group * SERVERS_PER_ROLLOUT + i}" for i in range(SERVERS_PER_ROLLOUT)]


def forward_to(fleet: SimulatedFleet) -> Callable[[dict[str, Any]], None]:
    """Apply a webhook payload: the change's env on apply, the env removed again on rollback."""

    def forward(payload: dict[str, Any]) -> None:
        for instance_id in payload["instance_ids"]:
            if payload["action"] == "apply":
                fleet.apply(instance_id, payload["changes"], payload["env"])
            else:
                fleet.apply(instance_id, {}, dict.fromkeys(payload["env"]))

    return forward


@pytest.fixture(scope="module", autouse=True)
def untraced() -> Iterator[None]:
    """112 simulated servers run in this process (see `coverage_paused`)."""
    with coverage_paused():
        yield


@pytest.fixture(scope="module")
def fleet(untraced: None) -> Iterator[SimulatedFleet]:
    """Busy servers (`vllm-*`, 30 req/s) and quiet ones (`quiet-*`, 3 req/s), all heavy-tailed, in one simulator."""
    clock = OffsetClock()
    flags: dict[str, object] = {"max_num_seqs": 256}
    busy = build_specs(
        "vllm",
        (HARMLESS + REGRESSIONS) * SERVERS_PER_ROLLOUT,
        flags=flags,
        workload=Workload(arrival_rate_per_s=30.0),
        latency_shape="heavy-tailed",
    )
    quiet = [
        replace(spec, instance_id=f"quiet-{i}")
        for i, spec in enumerate(
            build_specs(
                "vllm",
                SERVERS_PER_ROLLOUT,
                seed=1000,
                flags=flags,
                workload=Workload(arrival_rate_per_s=3.0),
                latency_shape="heavy-tailed",
            )
        )
    ]
    with SimulatedFleet([*busy, *quiet], clock=clock).start() as running:
        clock.advance(60.0)  # a minute of traffic already served: warm servers before any rollout
        for handle in running.instances:  # simulate that minute now, not inside the agent's first scrapes
            running.metrics_text(handle.instance_id)
        yield running


@pytest.fixture(scope="module")
def receiver(fleet: SimulatedFleet) -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(forward=forward_to(fleet)).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, fleet: SimulatedFleet) -> Iterator[AgentProcess]:
    directory = tmp_path_factory.mktemp("judge-agent")
    running = AgentProcess(
        directory / "agent.db",
        directory / "agent.log",
        SECRET,
        PERF_AGENT_WORKFLOW_TICK_S="0.2",
        PERF_AGENT_SCRAPE_TIMEOUT_S="20",  # 112 simulated servers share one Python process on a busy machine
    )
    try:
        running.register(fleet, [handle.instance_id for handle in fleet.instances], max_num_seqs=256)
        yield running
    finally:
        running.stop()


def _start(agent: AgentProcess, receiver: WebhookReceiver, ids: list[str], env: dict[str, str]) -> str:
    body = {
        "instance_ids": ids,
        "env": env,
        "actuator": {"type": "webhook", "url": receiver.url},
        "monitor": MONITOR,
    }
    created = agent.post("/api/v1/workflows", body)
    assert created.status_code == 201, created.text
    workflow_id: str = created.json()["workflow_id"]
    return workflow_id


def test_harmless_rollouts_complete_and_harmful_ones_roll_back(agent: AgentProcess, receiver: WebhookReceiver) -> None:
    harmless = [_start(agent, receiver, _ids("vllm", g), {"HARMLESS_MARKER": str(g)}) for g in range(HARMLESS)]
    slower = [_start(agent, receiver, _ids("vllm", HARMLESS + g), {REGRESSION_ENV: "1.5"}) for g in range(REGRESSIONS)]
    starved = _start(agent, receiver, _ids("quiet", 0), {REGRESSION_ENV: "4"})

    outcomes = {wid: agent.wait_status(wid, ENDED, deadline_s=DEADLINE_S) for wid in [*harmless, *slower, starved]}

    summary = {wid: (done["status"], done["stage_index"], done["status_reason"]) for wid, done in outcomes.items()}
    for workflow_id in harmless:
        done = outcomes[workflow_id]
        assert done["status"] == "completed", summary
        assert [w["verdict"] for w in done["windows"] if w["verdict"] == "fail"] == []
    for workflow_id in slower:
        done = outcomes[workflow_id]
        assert done["status"] == "rolled_back", (workflow_id, done["status_reason"])
        assert done["stage_index"] < 2, "rolled back before the last stage"
        failed = [w for w in done["windows"] if w["verdict"] == "fail"]
        assert failed, "the rollback is backed by a failed window"
        evidence = failed[-1]["evidence"]
        assert any(metric["exceeded"] for metric in evidence["metrics"]), evidence
    quiet = outcomes[starved]
    assert quiet["status"] == "rolled_back", ("rolled back, not paused", quiet["status_reason"])
    assert quiet["stage_index"] == 0
