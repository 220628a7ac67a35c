"""Fresh scrapes of a workflow's instances, and the cohort figures of a window between two of them.

Each scrape goes through the collection service (guard, parse, store), stamped by the
reconciler's clock, so a window is "every stored scrape of these instances between the window's
start and end" and the figures come from the same summed bucket deltas the rest of the agent
uses (`metrics.builder.cohort_figures`). Instances are scraped concurrently; one slow server
costs at most its timeout.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from performance_agent.metrics.builder import cohort_figures
from performance_agent.metrics.scraper import ScrapeFailure

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from performance_agent.analysis.schemas import SloTargets
    from performance_agent.metrics.builder import RawScrape, WindowFigures
    from performance_agent.metrics.collection import CollectionService
    from performance_agent.storage.instances import InstanceRepository
    from performance_agent.storage.snapshots import SnapshotRepository

__all__ = ("CohortObserver", "Observation")


@dataclass(frozen=True, slots=True)
class Observation:
    """One scrape: when it was stored (epoch seconds), or why there is none."""

    collected_at: float | None
    error: str | None = None


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class CohortObserver:
    def __init__(
        self,
        *,
        instances: InstanceRepository,
        snapshots: SnapshotRepository,
        collection: CollectionService,
        timeout_s: float,
    ) -> None:
        self._instances = instances
        self._snapshots = snapshots
        self._collection = collection
        self._timeout_s = timeout_s

    async def _one(self, instance_id: str) -> Observation:
        stored = await self._instances.get(instance_id)
        if stored is None:
            return Observation(None, "not_registered")
        try:
            snapshot = await self._collection.scrape(stored, timeout_s=self._timeout_s)
        except ScrapeFailure as failure:
            return Observation(None, failure.reason)
        return Observation(snapshot.collected_at.timestamp())

    async def observe(self, instance_ids: Sequence[str]) -> dict[str, Observation]:
        results = await asyncio.gather(*(self._one(instance_id) for instance_id in instance_ids))
        return dict(zip(instance_ids, results, strict=True))

    async def scrapes_between(self, instance_id: str, since: float, until: float) -> list[RawScrape]:
        return await self._snapshots.raw_between(instance_id, _utc(since), _utc(until))

    async def slo_targets(self, instance_id: str) -> SloTargets | None:
        """The instance's registered SLO targets; None when it declares none or is no longer registered."""
        stored = await self._instances.get(instance_id)
        return stored.spec.slo if stored is not None else None

    async def window(
        self, instance_ids: Sequence[str], marks: Mapping[str, float], ends: Mapping[str, Observation]
    ) -> tuple[WindowFigures, dict[str, str]]:
        """Figures of the instances over [their mark, their latest scrape], and the instances that have none.

        An instance without a window start (its previous scrape failed) or whose scrape now failed
        is reported with the reason instead of silently shrinking the cohort.
        """
        errors: dict[str, str] = {}
        series: list[list[RawScrape]] = []
        for instance_id in instance_ids:
            end = ends.get(instance_id)
            if end is None or end.collected_at is None:
                errors[instance_id] = end.error if end is not None and end.error else "not_scraped"
                continue
            start = marks.get(instance_id)
            if start is None:
                errors[instance_id] = "no_window_start"
                continue
            series.append(await self.scrapes_between(instance_id, start, end.collected_at))
        return cohort_figures(series), errors
