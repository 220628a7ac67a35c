"""The Prometheus-facing use cases: target groups and rule files from the registry, as they stand now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.fleet.slo import effective_targets
from performance_agent.prometheus.rules import RuleSubject, rules_yaml
from performance_agent.prometheus.targets import target_groups

if TYPE_CHECKING:
    from collections.abc import Mapping

    from performance_agent.engines.base import ObjectiveSeries
    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.fleet.slo import SloTargets
    from performance_agent.prometheus.targets import TargetGroup

__all__ = ("PrometheusService",)


class PrometheusService:
    def __init__(
        self,
        *,
        instances: InstanceRepository,
        slo_defaults: SloTargets,
        series: Mapping[str, ObjectiveSeries],
    ) -> None:
        self._instances = instances
        self._slo_defaults = slo_defaults
        self._series = series

    async def targets(self) -> list[TargetGroup]:
        """Every registered (scraped) instance as an `http_sd_configs` target group, by id."""
        return target_groups((stored.instance_id, stored.spec) for stored in await self._instances.list())

    async def rules(self) -> str:
        """The rule file for every registered instance's effective objectives (its own, else the defaults)."""
        subjects = [
            RuleSubject(stored.instance_id, stored.spec.engine, effective_targets(stored, self._slo_defaults)[0])
            for stored in await self._instances.list()
        ]
        return rules_yaml(subjects, self._series)
