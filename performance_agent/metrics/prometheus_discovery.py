"""The discovery loop: every `PERF_AGENT_PROMETHEUS_DISCOVERY_INTERVAL_S`, register the servers Prometheus scrapes.

Each round lists, per rule, the series of the engine's signature metric that match the rule
(`/api/v1/series` over the last interval), turns them into servers (`fleet.discovery`), and
applies the plan: new servers registered with source `prometheus` and `discovered: true` (the
rule's `slo` and labels applied then, never again), discovered instances not found marked gone,
gone ones found again unmarked. A round in which any query fails changes nothing, so an outage
of Prometheus never marks the fleet gone. Hand-registered instances are never written.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import msgspec

from performance_agent.clock import utc_now
from performance_agent.fleet.discovery import (
    DiscoveredServer,
    DiscoveryPlan,
    KnownInstance,
    discovery_selectors,
    plan_discovery,
    series_window,
    servers_of,
)
from performance_agent.fleet.ports import InstanceExistsError
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.metrics.scraper import ScrapeFailure

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from performance_agent.background import Heartbeat
    from performance_agent.fleet.discovery import DiscoveryRule
    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.fleet.slo import SloTargets
    from performance_agent.metrics.prometheus_reader import PrometheusApi

__all__ = ("PrometheusDiscovery",)

logger = logging.getLogger("performance_agent.metrics.prometheus_discovery")


class PrometheusDiscovery:
    def __init__(
        self,
        *,
        api: PrometheusApi,
        rules: list[DiscoveryRule],
        instances: InstanceRepository,
        slo_defaults: SloTargets,
        interval_s: float,
        timeout_s: float,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._api = api
        self._rules = rules
        self._instances = instances
        self._slo_defaults = slo_defaults
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self._clock = clock if clock is not None else utc_now

    async def run(self, beat: Heartbeat) -> None:
        """One round now, then one every interval; a failed round is logged and the next one tries again."""
        while True:
            try:
                await self.discover()
            except ScrapeFailure as failure:
                logger.warning(
                    "prometheus discovery round failed; nothing changed",
                    extra={"reason": failure.reason, "error": failure.message},
                )
            beat()
            await asyncio.sleep(self.interval_s)

    async def _found(self, now: datetime) -> list[tuple[DiscoveredServer, DiscoveryRule]]:
        start, end = series_window(now, self.interval_s)
        found: dict[str, tuple[DiscoveredServer, DiscoveryRule]] = {}
        for rule in self._rules:
            selectors = discovery_selectors(rule)
            series = await self._api.series(selectors, start=start, end=end, timeout_s=self._timeout_s)
            for server in servers_of(series, rule):
                found.setdefault(server.instance_id, (server, rule))  # an earlier rule wins an id
        return list(found.values())

    async def discover(self) -> DiscoveryPlan:
        """One round: list, plan, apply; raises `ScrapeFailure` (changing nothing) when a query fails."""
        now = self._clock()
        found = await self._found(now)
        known = [
            KnownInstance(stored.instance_id, stored.spec.discovered, stored.spec.gone_since)
            for stored in await self._instances.list()
        ]
        plan = plan_discovery([server for server, _ in found], known)
        rules = {server.instance_id: rule for server, rule in found}
        for server in plan.register:
            rule = rules[server.instance_id]
            spec = InstanceSpec(
                engine=rule.engine,
                source="prometheus",
                match=server.match,
                labels=dict(rule.labels),
                slo=None if rule.slo is None else rule.slo.over(self._slo_defaults),
                discovered=True,
            )
            try:
                await self._instances.create(server.instance_id, spec, now)
            except InstanceExistsError:  # registered by hand since the listing: theirs
                continue
            logger.info("discovered instance registered", extra={"instance": server.instance_id})
        for instance_id in plan.mark_gone:
            await self._set_gone(instance_id, now)
        for instance_id in plan.mark_back:
            await self._set_gone(instance_id, None)
        for instance_id in plan.conflicts:
            logger.warning(
                "discovered server has the id of a hand-registered instance; left alone",
                extra={"instance": instance_id},
            )
        return plan

    async def _set_gone(self, instance_id: str, since: datetime | None) -> None:
        stored = await self._instances.get(instance_id)
        if stored is None or not stored.spec.discovered:
            return
        await self._instances.replace(
            instance_id, msgspec.structs.replace(stored.spec, gone_since=since), self._clock()
        )
        logger.info("discovered instance %s", "gone" if since else "back", extra={"instance": instance_id})
