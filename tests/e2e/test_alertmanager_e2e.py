"""A real Alertmanager receives the agent's burn-rate alert, keeps it while it is re-sent, and drops it once resolved.

The evaluator is driven with scrapes stamped up to the real present (Alertmanager judges
`endsAt` on its own clock): five minutes of a new instance in total breach fire the fast pair,
the next evaluation re-sends it with a later `endsAt`, and a looser SLO resolves it with
`endsAt` = the resolving scrape, after which Alertmanager no longer lists it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from performance_agent.analysis.alerting import AlertEvaluator, AlertmanagerFeed, AlertMetrics
from performance_agent.fleet.ports import StoredInstance
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.snapshot import InstanceSnapshot, Latency, Quantiles
from performance_agent.outbound.alertmanager import AlertmanagerClient
from performance_agent.outbound.pinned import PinnedClients
from performance_agent.outbound.target_guard import parse_allowlist, system_resolver
from performance_agent.storage.alerts import MemoryAlertRepository
from performance_agent.storage.instances import MemoryStore
from performance_agent.storage.snapshots import MemorySnapshotRepository
from tests.agent_process import wait_for
from tests.prometheus_support import alertmanager

if TYPE_CHECKING:
    from pathlib import Path

    from tests.prometheus_support import RunningServer

pytestmark = pytest.mark.e2e

SCRAPE_S = 15.0
VALID_FOR_S = 240.0


def listed(server: RunningServer) -> list[dict[str, Any]]:
    """The agent's alerts Alertmanager lists as active."""
    answer = server.get("/api/v2/alerts", active="true", silenced="false", inhibited="false")
    assert answer.status_code == 200, answer.text
    return [a for a in answer.json() if a["labels"].get("instance_id") == "am-0"]


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_alertmanager_lists_the_firing_alert_and_drops_it_after_it_resolves(tmp_path: Path) -> None:
    with alertmanager(tmp_path / "alertmanager") as server:
        outcomes: list[str] = []
        clients = PinnedClients()
        sender = AlertmanagerClient(
            server.base,
            clients=clients,
            allowlist=parse_allowlist(["127.0.0.1/32"]),
            resolver=system_resolver,
            on_outcome=outcomes.append,
            resend_interval_s=60.0,
        )
        store = MemoryStore()
        instance = StoredInstance(
            instance_id="am-0",
            spec=InstanceSpec(engine="vllm", endpoint="http://127.0.0.1:9"),
            created_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )
        store.instances["am-0"] = instance
        snapshots = MemorySnapshotRepository(store)
        evaluator = AlertEvaluator(
            snapshots=snapshots,
            alerts=MemoryAlertRepository(),
            defaults=SloTargets(),
            metrics=AlertMetrics(CollectorRegistry()),
            alertmanager=AlertmanagerFeed(sink=sender, valid_for_s=VALID_FOR_S, external_url="http://127.0.0.1:8000"),
        )
        # Whole seconds: Alertmanager answers timestamps in milliseconds.
        first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=300)

        async def scrape(index: int, stored: StoredInstance) -> list[str]:
            at = first + timedelta(seconds=SCRAPE_S * index)
            taken = InstanceSnapshot(
                instance_id="am-0",
                engine="vllm",
                endpoint="http://127.0.0.1:9",
                collected_at=at,
                window_s=None if index == 0 else SCRAPE_S,
                latency=Latency(itl_s=Quantiles(p99=0.5, count=100)),
            )
            assert await snapshots.add("am-0", at, msgspec.json.encode(taken), b"")
            events = await evaluator.after_scrape(stored, taken)
            await sender.flush()
            return [f"{e.kind} {e.alert.pair}" for e in events]

        async def breach_then_loosen() -> None:
            fired = [event for index in range(19) for event in await scrape(index, instance)]
            assert fired == ["fire 1h/5m"]  # at 270 s, the scrape of index 18
            [alert] = listed(server)
            assert alert["labels"] == {
                "alertname": "PerformanceAgentSLOBurnRate",
                "instance_id": "am-0",
                "objective": "itl_p99_s",
                "long_window": "1h",
                "short_window": "5m",
                "severity": "page",
            }
            assert alert["annotations"]["summary"] == "itl_p99_s burns its error budget on am-0"
            assert parse(alert["startsAt"]) == first + timedelta(seconds=270)
            assert parse(alert["endsAt"]) == first + timedelta(seconds=270 + VALID_FOR_S)
            assert alert["generatorURL"] == "http://127.0.0.1:8000/api/v1/alerts?instance_id=am-0"
            assert alert["status"]["state"] == "active"

            assert await scrape(19, instance) == []  # still firing: re-sent with a later endsAt
            [again] = listed(server)
            assert parse(again["endsAt"]) == first + timedelta(seconds=285 + VALID_FOR_S)
            assert again["fingerprint"] == alert["fingerprint"]

            looser = msgspec.structs.replace(
                instance, spec=msgspec.structs.replace(instance.spec, slo=SloTargets(itl_p99_s=1.0))
            )
            assert await scrape(20, looser) == ["resolve 1h/5m"]  # endsAt = that scrape, now in the past
            await clients.aclose()

        asyncio.run(breach_then_loosen())
        wait_for(lambda: listed(server) == [], "Alertmanager to drop the resolved alert", deadline_s=10)
        assert outcomes == ["ok"] * 3
