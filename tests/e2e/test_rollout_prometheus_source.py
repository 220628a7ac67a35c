"""A rollout on instances read through Prometheus rolls a regression back, with the same evidence as direct scrapes.

Four simulated vLLM servers (40x real time) are scraped every second by a real Prometheus
(Debian package `prometheus`); two are registered with `source: prometheus` (read through it),
two with their endpoint (scraped by the agent). The same harmful change (every latency 4x, the
simulator's regression variable) is rolled out to both pairs at once with the simulator
actuator, which restarts a server with the change through the simulator hub (a prometheus-sourced
instance has no endpoint of its own to actuate). Both must roll back in their first stage on a
failed window, and the gate's evidence must have the same shape (fields and metrics judged):
the judge cannot tell where its readings came from. Monitor windows span several Prometheus
scrapes, since a reading through Prometheus is only as fresh as its last scrape.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.simulator.fleet import start_simulator
from performance_agent.simulator.instance import REGRESSION_ENV
from tests.agent_process import wait_for
from tests.prometheus_support import prometheus
from tests.rollout_support import AgentProcess, OffsetClock

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

SECRET = "e2e-prometheus-rollout-secret-0123"
TIME_SCALE = 40.0
MONITOR = {"duration_s": 6, "interval_s": 2, "warmup_s": 2}
ENDED = {"completed", "rolled_back", "failed", "rejected", "cancelled", "paused"}
THROUGH_PROMETHEUS = ["vllm-0", "vllm-1"]
DIRECT = ["vllm-2", "vllm-3"]


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and element shapes, without the numbers."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return sorted({json.dumps(_shape(item), sort_keys=True) for item in value})
    return type(value).__name__ if value is not None else "null"


def _rolled_back(done: dict[str, Any]) -> dict[str, Any]:
    assert done["status"] == "rolled_back", done["status_reason"]
    assert done["stage_index"] == 0
    failed = [w for w in done["windows"] if w["verdict"] == "fail"]
    assert failed, "the rollback is backed by a failed window"
    evidence: dict[str, Any] = failed[-1]["evidence"]
    assert evidence["decision"] == "rollback", evidence
    assert any(metric["exceeded"] for metric in evidence["metrics"]), evidence
    return evidence


def test_a_regression_on_prometheus_sourced_instances_is_rolled_back_with_direct_scrape_evidence(
    tmp_path: Path,
) -> None:
    clock = OffsetClock()
    with start_simulator("vllm", 4, seed=5, time_scale=TIME_SCALE, clock=clock) as fleet:
        clock.advance(5.0)  # 200 simulated seconds of traffic: warm servers before any rollout
        hub = fleet.instances[0].control_url.split("/i/")[0]
        targets = [
            {"targets": [h.endpoint.removeprefix("http://")], "labels": {"pod": h.instance_id}} for h in fleet.instances
        ]
        config = (
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: vllm\n"
            f"    metrics_path: {fleet.instances[0].metrics_path}\n    static_configs: {json.dumps(targets)}\n"
        )
        with prometheus(tmp_path / "prometheus", config) as server:

            def all_up() -> bool:
                result = server.get("/api/v1/query", query='count(up{job="vllm"} == 1)').json()["data"]["result"]
                return bool(result) and result[0]["value"][1] == "4"

            wait_for(all_up, "Prometheus to scrape the four servers", deadline_s=30)
            agent = AgentProcess(
                tmp_path / "agent.db", tmp_path / "agent.log", SECRET, PERF_AGENT_PROMETHEUS_URL=server.base
            )
            try:
                for instance_id in THROUGH_PROMETHEUS:
                    body = {"instance_id": instance_id, "engine": "vllm", "source": "prometheus",
                            "match": f'{{job="vllm",pod="{instance_id}"}}'}  # fmt: skip
                    registered = agent.post("/api/v1/instances", body)
                    assert registered.status_code == 201, registered.text
                agent.register(fleet, DIRECT)
                started: dict[str, str] = {}
                for ids in (THROUGH_PROMETHEUS, DIRECT):
                    rollout: dict[str, Any] = {"instance_ids": ids, "env": {REGRESSION_ENV: "4"},
                            "actuator": {"type": "simulator", "url": hub}, "monitor": MONITOR}  # fmt: skip
                    created = agent.post("/api/v1/workflows", rollout)
                    assert created.status_code == 201, created.text
                    started[ids[0]] = created.json()["workflow_id"]
                via = _rolled_back(agent.wait_status(started["vllm-0"], ENDED, deadline_s=60))
                direct = _rolled_back(agent.wait_status(started["vllm-2"], ENDED, deadline_s=60))
                assert _shape(via) == _shape(direct)
                assert [m["metric"] for m in via["metrics"]] == [m["metric"] for m in direct["metrics"]]
                for instance_id in ("vllm-0", "vllm-2"):  # the canaries run without the change again
                    assert fleet.state(instance_id)["env"] == {}, fleet.state(instance_id)
            finally:
                agent.stop()
