"""SLO burn-rate alerts end to end: a simulated vLLM server over HTTP, the agent's collector, storage and
API, and an Alertmanager-style webhook receiver over HTTP, all on 127.0.0.1.

Time is simulated: the simulator and the collector read one manual clock, so an hour of scrapes
every 30 s runs in seconds and nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.analysis.alerting import AlertEvaluator, AlertWebhook
from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.collection import CollectionService
from performance_agent.metrics.collector import Collector
from performance_agent.outbound.target_guard import parse_allowlist, system_resolver
from performance_agent.simulator import ManualClock, Workload, start_simulator
from performance_agent.storage.alerts import SqlAlertRepository
from tests.api.analysis_support import Receiver

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import TestClient

    from performance_agent.context import AgentContext
    from tests.conftest import ClientFactory

pytestmark = pytest.mark.e2e

SCRAPE_S = 30.0
ITL_ALERT = ("itl_p99_s", "1h/5m")


def alerts(client: TestClient[Litestar], state: str) -> list[tuple[str, str, dict[str, Any]]]:
    response = client.get("/api/v1/alerts", params={"state": state, "instance_id": "sim-0"})
    assert response.status_code == 200, response.text
    return [(a["objective"], a["pair"], a) for a in response.json()]


def test_alerts_fire_and_resolve_against_the_simulator(client_factory: ClientFactory) -> None:
    clock = ManualClock()
    workload = Workload(arrival_rate_per_s=2.0, output_tokens_mean=128.0)
    with Receiver() as receiver, start_simulator("vllm", 1, clock=clock, workload=workload) as fleet:
        client = client_factory(scrape_background=False)
        handle = fleet.instances[0]
        registration = {
            "instance_id": "sim-0",
            "engine": "vllm",
            "endpoint": handle.endpoint,
            "slo": {"itl_p99_s": 0.1, "ttft_p99_s": 5.0, "e2e_p99_s": 120.0},
        }
        assert client.post("/api/v1/instances", json=registration).status_code == 201
        context: AgentContext = client.app.state.context
        collection = CollectionService(
            instances=context.instances,
            snapshots=context.snapshots,
            clients=context.clients,
            allowlist=parse_allowlist(context.settings.scrape_allowlist),
            resolver=system_resolver,
            max_bytes=context.settings.scrape_max_bytes,
            allowed_header_env=frozenset(),
            metrics=context.metrics.scrapes,
            clock=lambda: datetime.fromtimestamp(clock(), UTC),
        )
        webhook = AlertWebhook(
            receiver.url,
            clients=context.clients,
            allowlist=parse_allowlist(["127.0.0.1/32"]),
            resolver=system_resolver,
            receiver="performance-agent",
            external_url="http://127.0.0.1:8000",
            metrics=context.metrics.alerts,
        )
        evaluator = AlertEvaluator(
            snapshots=context.snapshots,
            alerts=SqlAlertRepository(context.database),
            defaults=SloTargets(),
            webhook=webhook,
            metrics=context.metrics.alerts,
        )
        collector = Collector(
            instances=context.instances,
            collection=collection,
            interval_s=SCRAPE_S,
            concurrency=4,
            timeout_s=5.0,
            after_scrape=evaluator.after_scrape,
        )
        portal = client.blocking_portal
        assert portal is not None

        async def cycle() -> int:
            report = await collector.collect_all()
            await webhook.flush()
            return report.succeeded

        def run(minutes: int) -> None:
            for _ in range(int(minutes * 60 / SCRAPE_S)):
                clock.advance(SCRAPE_S)
                assert portal.call(cycle) == 1

        run(30)  # healthy: half an hour of good data
        assert alerts(client, "firing") == []
        assert receiver.bodies == []

        fleet.set_faults(handle.instance_id, latency_regression=5.0)  # every engine step five times slower
        run(10)
        firing = {(objective, pair): alert for objective, pair, alert in alerts(client, "firing")}
        assert ITL_ALERT in firing, firing
        fired = firing[ITL_ALERT]
        assert fired["burn_rate_long"] >= 14.4
        assert fired["burn_rate_short"] >= 14.4
        assert fired["ended_at"] is None
        sent = [body for body in receiver.bodies if body["status"] == "firing"]
        assert sent, receiver.bodies
        notified = next(
            a
            for b in sent
            for a in b["alerts"]
            if a["labels"]["objective"] == "itl_p99_s" and a["labels"]["short_window"] == "5m"
        )
        assert notified["labels"]["alertname"] == "PerformanceAgentSLOBurnRate"
        assert notified["labels"]["instance_id"] == "sim-0"
        assert notified["startsAt"] == fired["started_at"]
        assert notified["endsAt"] == "0001-01-01T00:00:00Z"
        assert sent[0]["version"] == "4"
        assert sent[0]["receiver"] == "performance-agent"
        firing_line = (
            'performance_agent_slo_alert_firing{instance_id="sim-0",long_window="1h",objective="itl_p99_s",'
            'short_window="5m"} 1.0'
        )
        assert firing_line in client.get("/metrics").text

        fleet.set_faults(handle.instance_id, latency_regression=None)
        run(15)
        assert ITL_ALERT not in {(objective, pair) for objective, pair, _ in alerts(client, "firing")}
        resolved = {(objective, pair): alert for objective, pair, alert in alerts(client, "resolved")}
        assert resolved[ITL_ALERT]["started_at"] == fired["started_at"]
        assert resolved[ITL_ALERT]["ended_at"] > fired["started_at"]
        closing = [
            a
            for body in receiver.bodies
            if body["status"] == "resolved"
            for a in body["alerts"]
            if a["labels"]["objective"] == "itl_p99_s" and a["labels"]["short_window"] == "5m"
        ]
        assert [a["endsAt"] for a in closing] == [resolved[ITL_ALERT]["ended_at"]]
        assert firing_line not in client.get("/metrics").text
