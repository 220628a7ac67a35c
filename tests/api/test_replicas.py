"""Two whole agents on one PostgreSQL database: one leads the background loops, the other takes over when it dies.

Each agent is built by the composition root and started as its lifespan starts it; "killed" is
what `kill -9` leaves behind: its tasks stop without releasing anything, so the survivor must
wait for the lease to expire (a 1 s lease here) before it leads.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from performance_agent.analysis.schemas import AlertEvent
from performance_agent.composition import build_agent
from performance_agent.replicas.coordinator import LEADER_LEASE
from performance_agent.security import ApiKeyRing
from performance_agent.system.service import detailed_health
from tests.api.test_alerts import START, alert_state
from tests.conftest import ClientFactory, make_settings
from tests.postgres_support import fresh_database_url

if TYPE_CHECKING:
    from performance_agent.context import AgentContext

TTL_S = 1.0


def agent(url: str, name: str) -> AgentContext:
    settings = make_settings(database_url=url, replica_id=name, lease_ttl_s=TTL_S, scrape_interval_s=5.0)
    return build_agent(settings, ApiKeyRing([]))


async def kill(context: AgentContext) -> None:
    """Stop every task of `context` as a SIGKILL would: nothing released, nothing handed over."""
    await context.loops.stop()
    await context.leader_loops.stop()
    await context.clients.aclose()
    context.page_reader.close()
    await context.storage.close()


def loop_names(context: AgentContext) -> set[str]:
    return {status.name for status in [*context.loops.report(), *context.leader_loops.report()]}


def test_one_agent_leads_and_another_takes_over_within_the_lease_after_a_kill() -> None:
    url = fresh_database_url()

    async def scenario() -> None:
        first, second = agent(url, "agent-a"), agent(url, "agent-b")
        await first.start()
        await second.start()
        try:
            assert (first.coordinator.is_leader, second.coordinator.is_leader) == (True, False)
            assert "collector" in loop_names(first)
            assert "collector" not in loop_names(second)
            assert {"workflow-reconciler", "judgement-runner"} <= loop_names(second)  # every replica moves rollouts
            health = await detailed_health(second)
            assert health.status != "unhealthy"
            assert health.replica.role == "follower"
            assert health.replica.leader is not None
            assert health.replica.leader.replica_id == "agent-a"
            killed_at = time.monotonic()
            await kill(first)
            while not second.coordinator.is_leader:
                assert time.monotonic() - killed_at < TTL_S + 2.0, "no takeover"
                await asyncio.sleep(0.05)
            took_over_s = time.monotonic() - killed_at
            assert took_over_s <= TTL_S + TTL_S / 3 + 0.5  # expiry, then at most one renewal interval
            assert "collector" in loop_names(second)
            record = await second.storage.leases.read(LEADER_LEASE)
            assert record is not None
            assert record.holder == "agent-b"
        finally:
            await second.stop()

    asyncio.run(scenario())


def test_a_clean_stop_hands_the_lease_over_without_waiting_for_expiry() -> None:
    url = fresh_database_url()

    async def scenario() -> None:
        first = agent(url, "agent-a")
        await first.start()
        await first.stop()
        second = agent(url, "agent-b")
        await second.start()
        try:
            assert second.coordinator.is_leader  # at its first try, not a lease later
        finally:
            await second.stop()

    asyncio.run(scenario())


def test_only_the_leader_re_sends_the_firing_alerts_to_alertmanager(client_factory: ClientFactory) -> None:
    client = client_factory(replica_id="agent-a", alertmanager_url="http://127.0.0.1:9093", scrape_background=False)
    context: AgentContext = client.app.state.context
    portal = client.blocking_portal
    assert portal is not None
    portal.call(context.storage.alerts.record, [AlertEvent(kind="fire", at=START, alert=alert_state("firing"))])
    assert list(portal.call(context.alerts_to_resend)) == ["0123456789abcdef"]
    portal.call(context.storage.leases.release, LEADER_LEASE, "agent-a")
    portal.call(context.storage.leases.acquire, LEADER_LEASE, "agent-b", 60.0)
    portal.call(context.coordinator.step)
    assert not context.coordinator.is_leader
    assert portal.call(context.alerts_to_resend) == {}  # the leader, agent-b, re-sends them
