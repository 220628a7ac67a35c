"""The agent under uvicorn, as users run it, collecting from simulated vLLM, TGI and SGLang servers.

One scenario, in the order an operator meets it: on-demand collects of every engine, background
collection building history, a server going dark without slowing the others, the agent's own
`/metrics`, a second agent refused on the same database, and history surviving a restart.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from performance_agent.simulator import SimulatedFleet, start_simulator
from tests.agent_process import ServedAgent, wait_for

pytestmark = pytest.mark.e2e

OPERATOR_KEY = "e2e-operator-key-0123456789"
HEADERS = {"X-API-Key": OPERATOR_KEY}
INTERVAL_S = 0.3


class Agent(ServedAgent):
    """An agent that collects in the background every INTERVAL_S; the test waits for readiness itself."""

    def __init__(self, database: Path, log: Path) -> None:
        super().__init__(
            database,
            log,
            headers=HEADERS,
            wait=False,
            settings={
                "PERF_AGENT_API_KEYS": f"ops:operator:{OPERATOR_KEY}",
                "PERF_AGENT_SCRAPE_INTERVAL_S": str(INTERVAL_S),
            },
        )


@pytest.fixture
def fleets() -> Iterator[dict[str, SimulatedFleet]]:
    started = {
        "vllm": start_simulator("vllm", 2, seed=1),
        "tgi": start_simulator("tgi", 1, seed=2),
        "sglang": start_simulator("sglang", 1, seed=3),
    }
    yield started
    for fleet in started.values():
        fleet.stop()


def has_history(agent: Agent, instance_id: str, count: int) -> Callable[[], bool]:
    return lambda: len(history(agent, instance_id)) >= count


def has_ttft(agent: Agent, instance_id: str) -> Callable[[], bool]:
    return lambda: history(agent, instance_id)[0]["latency"]["ttft_s"]["p99"] is not None


def history(agent: Agent, instance_id: str) -> list[dict[str, Any]]:
    response = agent.get(f"/api/v1/history/{instance_id}", limit=1000)
    assert response.status_code == 200, response.text
    snapshots: list[dict[str, Any]] = response.json()
    return snapshots


def metric(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_agent_collects_from_every_engine_under_uvicorn(fleets: dict[str, SimulatedFleet], tmp_path: Path) -> None:
    database = tmp_path / "agent.db"
    agent = Agent(database, tmp_path / "agent.log")
    try:
        wait_for(agent.ready, "the agent to be ready")
        handles = [handle for fleet in fleets.values() for handle in fleet.instances]

        # on demand, one of each engine
        for handle in handles:
            response = agent.post(
                f"/api/v1/collect/{handle.engine}",
                {"instance_id": handle.instance_id, "endpoint": handle.endpoint, "metrics_path": handle.metrics_path},
            )
            assert response.status_code == 200, response.text
            snapshot = response.json()
            assert (snapshot["instance_id"], snapshot["engine"]) == (handle.instance_id, handle.engine)
            assert snapshot["load"]["requests_running"] is not None
        mismatch = agent.post(
            "/api/v1/collect/vllm",
            {"instance_id": "wrong", "endpoint": fleets["tgi"].instances[0].endpoint},
        )
        assert mismatch.status_code == 422
        assert mismatch.json()["context"]["detected_engine"] == "tgi"

        # the background collector builds history with windows between scrapes
        for handle in handles:
            wait_for(has_history(agent, handle.instance_id, 4), f"history of {handle.instance_id}")
        newest = history(agent, "vllm-0")[0]
        assert newest["window_s"] is not None
        assert newest["window_s"] > 0
        assert newest["throughput"]["requests_per_s"] is not None
        for handle in handles:  # once requests have been served, every engine yields a TTFT quantile
            wait_for(has_ttft(agent, handle.instance_id), f"a TTFT p99 for {handle.instance_id}")
        tgi_snapshot = history(agent, "tgi-0")[0]
        assert {item["field"] for item in tgi_snapshot["approximations"]} >= {"latency.ttft_s", "load.kv_cache_usage"}

        # a server going dark is recorded and slows nobody else down
        fleets["vllm"].set_faults("vllm-1", unreachable=True)

        def dark() -> bool:
            state: dict[str, Any] = agent.get("/api/v1/instances/vllm-1").json()
            error: dict[str, Any] = state["last_error"] or {}
            return state["status"] == "down" and error.get("code") == "upstream_unreachable"

        wait_for(dark, "vllm-1 to be reported down")
        counts = {handle.instance_id: len(history(agent, handle.instance_id)) for handle in handles}
        for instance_id in ("vllm-0", "tgi-0", "sglang-0"):
            wait_for(has_history(agent, instance_id, counts[instance_id] + 3), f"{instance_id} to keep going")
        down = agent.get("/api/v1/instances", status="down").json()
        assert {item["instance_id"]: item["last_error"]["code"] for item in down} == {
            "vllm-1": "upstream_unreachable",
            "wrong": "engine_mismatch",
        }

        # the agent's own metrics show the work
        own = httpx.get(f"{agent.base}/metrics", timeout=10).text
        assert metric(own, 'performance_agent_scrape_duration_seconds_count{engine="sglang",outcome="ok"}') >= 4
        assert metric(own, 'performance_agent_scrape_failures_total{engine="vllm",reason="upstream_unreachable"}') >= 1
        assert metric(own, 'performance_agent_instances{status="down"}') == 2
        assert metric(own, 'performance_agent_instances{status="up"}') == 3

        # only one agent may own the database file
        intruder = Agent(database, tmp_path / "intruder.log")
        assert intruder.process.wait(timeout=60) != 0
        intruder.stop()
        assert "already used by another performance-agent process" in intruder.log.read_text()
        assert agent.ready()
        kept = {handle.instance_id: len(history(agent, handle.instance_id)) for handle in handles}
    finally:
        assert agent.stop() in (0, -signal.SIGTERM), agent.log.read_text()

    # history and registrations survive a restart
    restarted = Agent(database, tmp_path / "restarted.log")
    try:
        wait_for(restarted.ready, "the restarted agent")
        ids = [item["instance_id"] for item in restarted.get("/api/v1/instances").json()]
        assert ids == ["sglang-0", "tgi-0", "vllm-0", "vllm-1", "wrong"]
        for instance_id, count in kept.items():
            assert len(history(restarted, instance_id)) >= count
    finally:
        restarted.stop()
