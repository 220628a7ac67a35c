"""Readings of a workflow's instances, and each cohort's stored scrapes over a window between two of them.

Each scrape goes through the collection service (guard, parse, store), stamped by the
reconciler's clock, so a window is "every stored scrape of these instances between the window's
start and end", summed by `metrics.builder` as the rest of the agent sums them (`cohort_counts`
for the judge, `cohort_figures` for display). Instances are scraped concurrently; one slow server
costs at most its timeout.

Freshness rule: the background collector already stores a reading of every registered instance
every `PERF_AGENT_SCRAPE_INTERVAL_S`. When an instance's latest successful reading is no older
than `min(interval_s, PERF_AGENT_WORKFLOW_MAX_READING_AGE_S)` (the caller's window interval),
it ends the window as it is, and the instance is not scraped again. Otherwise (an instance that
is down, or a collector that is behind, off or slower than the window) it is scraped now, so a
crashed canary is still seen at once. The price: a window's end may lag the clock by up to that
age, which delays a rollback by at most one such age (docs/rollout.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from performance_agent.clock import utc
from performance_agent.metrics.scraper import ScrapeFailure

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.fleet.slo import SloTargets
    from performance_agent.metrics.builder import RawScrape
    from performance_agent.metrics.collection import CollectionService
    from performance_agent.metrics.ports import SnapshotRepository

__all__ = ("CohortObserver", "Observation")


@dataclass(frozen=True, slots=True)
class Observation:
    """One scrape: when it was stored (epoch seconds), or why there is none."""

    collected_at: float | None
    error: str | None = None


class CohortObserver:
    def __init__(
        self,
        *,
        instances: InstanceRepository,
        snapshots: SnapshotRepository,
        collection: CollectionService,
        timeout_s: float,
        max_reading_age_s: float = 0.0,
    ) -> None:
        self._instances = instances
        self._snapshots = snapshots
        self._collection = collection
        self._timeout_s = timeout_s
        self._max_reading_age_s = max_reading_age_s

    async def _one(self, instance_id: str, now: float | None, max_age_s: float, after: float | None) -> Observation:
        stored = await self._instances.get(instance_id)
        if stored is None:
            return Observation(None, "not_registered")
        last_seen = stored.state.last_seen
        if now is not None and stored.state.status == "up" and last_seen is not None:
            stamp = last_seen.timestamp()
            if 0.0 <= now - stamp <= max_age_s and (after is None or stamp > after):
                return Observation(stamp)
        try:
            snapshot = await self._collection.scrape(stored, timeout_s=self._timeout_s)
        except ScrapeFailure as failure:
            return Observation(None, failure.reason)
        return Observation(snapshot.collected_at.timestamp())

    async def observe(
        self,
        instance_ids: Sequence[str],
        *,
        now: float | None = None,
        interval_s: float = 0.0,
        after: Mapping[str, float] | None = None,
    ) -> dict[str, Observation]:
        """A reading of every instance: the stored one when fresh enough (see the module doc), else a scrape.

        A stored reading is reused only if it is newer than the instance's `after` mark (the
        window's start), so a window never ends where it began. Without `now` every instance is
        scraped.
        """
        max_age_s = min(interval_s, self._max_reading_age_s)
        marks = after or {}
        results = await asyncio.gather(
            *(self._one(instance_id, now, max_age_s, marks.get(instance_id)) for instance_id in instance_ids)
        )
        return dict(zip(instance_ids, results, strict=True))

    async def scrapes_between(self, instance_id: str, since: float, until: float) -> list[RawScrape]:
        return await self._snapshots.raw_between(instance_id, utc(since), utc(until))

    async def slo_targets(self, instance_id: str) -> SloTargets | None:
        """The instance's registered SLO targets; None when it declares none or is no longer registered."""
        stored = await self._instances.get(instance_id)
        return stored.spec.slo if stored is not None else None

    async def series(
        self, instance_ids: Sequence[str], marks: Mapping[str, float], ends: Mapping[str, Observation]
    ) -> tuple[list[list[RawScrape]], dict[str, str]]:
        """Each instance's stored scrapes over [its mark, its latest reading], and the instances that have none.

        An instance without a window start (its previous scrape failed) or whose reading now failed
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
        return series, errors
