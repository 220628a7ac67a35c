"""The background collector: every registered instance scraped every interval, none waiting on another.

Each instance has its own schedule: a random first due time within one interval (so a fleet
registered at once does not scrape in lock step), then one interval after the previous due
time. Every tick dispatches the instances that are due as their own tasks, bounded by a
semaphore, and never waits for them; an instance whose previous scrape is still running is
skipped until it finishes, so a slow or dead target holds at most one slot, for at most its
timeout, and never delays anyone's schedule. Every per-target error is caught and recorded.

`collect_all` scrapes every instance at once and reports the cycle (used by benchmarks and
operators); `RetentionPruner` deletes history older than the retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
from prometheus_client.core import GaugeMetricFamily

from performance_agent.clock import utc_now
from performance_agent.fleet.schemas import InstanceError
from performance_agent.metrics.scraper import ScrapeFailure

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from performance_agent.background import Heartbeat
    from performance_agent.fleet.ports import InstanceRepository, StoredInstance
    from performance_agent.metrics.collection import CollectionService
    from performance_agent.metrics.snapshot import InstanceSnapshot

    #: Called after each successful background scrape (SLO alert evaluation); its errors are logged.
    AfterScrape = Callable[[StoredInstance, InstanceSnapshot], Awaitable[object]]
    from performance_agent.metrics.ports import SnapshotRepository

__all__ = ("PRUNE_INTERVAL_S", "Collector", "CycleReport", "InstanceStatusCollector", "RetentionPruner")

logger = logging.getLogger("performance_agent.metrics.collector")

#: How often history older than the retention is deleted.
PRUNE_INTERVAL_S = 300.0
_STATUSES = ("pending", "up", "down")


class CycleReport(msgspec.Struct, kw_only=True):
    instances: int
    succeeded: int
    failed: int
    wall_s: float
    cpu_s: float


class Collector:
    def __init__(
        self,
        *,
        instances: InstanceRepository,
        collection: CollectionService,
        interval_s: float,
        concurrency: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        after_scrape: AfterScrape | None = None,
    ) -> None:
        self._instances = instances
        self._after_scrape = after_scrape
        self._collection = collection
        self._interval_s = interval_s
        self._timeout_s = min(timeout_s, 60.0)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._next_due: dict[str, float] = {}
        self._in_flight: dict[str, asyncio.Task[bool]] = {}
        #: Registered instances by status, as of the last dispatch pass (None before the first one).
        self.status_counts: dict[str, int] | None = None
        #: How long the loop sleeps between two dispatch passes.
        self.tick_s = min(1.0, max(interval_s / 4, 0.01))

    @property
    def in_flight(self) -> frozenset[str]:
        return frozenset(self._in_flight)

    async def run(self, beat: Heartbeat) -> None:
        """The loop body for `BackgroundLoops.start`; in-flight scrapes are cancelled when it stops."""
        try:
            while True:
                beat()
                await self.dispatch_due()
                await self._sleep(self.tick_s)
        finally:
            await self.cancel_in_flight()

    async def dispatch_due(self) -> list[str]:
        """Start a scrape of every instance that is due and not already being scraped; returns their ids."""
        registered = await self._instances.list()
        counts = dict.fromkeys(_STATUSES, 0)
        now = self._clock()
        started: list[str] = []
        known = set()
        for instance in registered:
            instance_id = instance.instance_id
            known.add(instance_id)
            counts[instance.state.status] = counts.get(instance.state.status, 0) + 1
            due = self._next_due.get(instance_id)
            if due is None:
                due = self._next_due[instance_id] = now + self._rng.uniform(0, self._interval_s)
            if due > now or instance_id in self._in_flight:
                continue
            # Keep the phase; after a long stall, restart from now rather than firing a burst.
            next_due = due + self._interval_s
            self._next_due[instance_id] = next_due if next_due > now else now + self._interval_s
            task = asyncio.create_task(self._scrape_one(instance), name=f"scrape:{instance_id}")
            self._in_flight[instance_id] = task
            task.add_done_callback(self._forget)
            started.append(instance_id)
        for forgotten in set(self._next_due) - known:
            del self._next_due[forgotten]
        self.status_counts = counts
        return started

    def _forget(self, task: asyncio.Task[bool]) -> None:
        instance_id = task.get_name().removeprefix("scrape:")
        if self._in_flight.get(instance_id) is task:
            del self._in_flight[instance_id]

    async def wait_in_flight(self) -> None:
        """Wait for the scrapes started so far (tests and shutdown)."""
        tasks = list(self._in_flight.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel_in_flight(self) -> None:
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def collect_all(self) -> CycleReport:
        """Scrape every registered instance now (bounded by the concurrency) and report the cycle."""
        wall, cpu = time.perf_counter(), time.process_time()
        registered = await self._instances.list()
        outcomes = await asyncio.gather(*(self._scrape_one(instance) for instance in registered))
        succeeded = sum(outcomes)
        return CycleReport(
            instances=len(registered),
            succeeded=succeeded,
            failed=len(registered) - succeeded,
            wall_s=time.perf_counter() - wall,
            cpu_s=time.process_time() - cpu,
        )

    async def _scrape_one(self, instance: StoredInstance) -> bool:
        """Never raises: a failure is already recorded on the instance by the collection service."""
        async with self._semaphore:
            try:
                snapshot = await self._collection.scrape(instance, timeout_s=self._timeout_s)
            except ScrapeFailure:
                return False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("scrape crashed", extra={"instance": instance.instance_id})
                error = InstanceError(
                    code="internal_error", message=f"the scrape crashed: {type(exc).__name__}", at=utc_now()
                )
                with contextlib.suppress(Exception):
                    await self._instances.record_failure(instance.instance_id, error)
                return False
        if self._after_scrape is not None:
            try:
                await self._after_scrape(instance, snapshot)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("post-scrape hook failed", extra={"instance": instance.instance_id})
        return True


class RetentionPruner:
    """Deletes snapshots older than the retention, then the oldest ones over `max_bytes`, every `PRUNE_INTERVAL_S`.

    Why a size cap too: a fleet (or one server with a huge page) can store more in an hour than
    the disk holds for a week; age alone did not bound the database.
    """

    def __init__(
        self,
        snapshots: SnapshotRepository,
        retention_hours: int,
        *,
        max_bytes: int | None = None,
        interval_s: float = PRUNE_INTERVAL_S,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._snapshots = snapshots
        self._retention = timedelta(hours=retention_hours)
        self._max_bytes = max_bytes
        self._interval_s = interval_s
        self._now = now if now is not None else utc_now
        self._sleep = sleep

    @property
    def interval_s(self) -> float:
        return self._interval_s

    async def prune_once(self) -> int:
        removed = await self._snapshots.prune(self._now() - self._retention)
        if removed:
            logger.info("pruned old snapshots", extra={"removed": removed})
        if self._max_bytes is not None:
            oversize = await self._snapshots.prune_to_size(self._max_bytes)
            if oversize:
                logger.warning(
                    "history over PERF_AGENT_HISTORY_MAX_BYTES: pruned the oldest snapshots",
                    extra={"removed": oversize, "max_bytes": self._max_bytes},
                )
            removed += oversize
        return removed

    async def run(self, beat: Heartbeat) -> None:
        while True:
            beat()
            await self.prune_once()
            await self._sleep(self._interval_s)


class InstanceStatusCollector:
    """`performance_agent_instances{status}`, read from the collector's last pass at scrape time."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._collector.status_counts
        if counts is None:
            return
        family = GaugeMetricFamily(
            "performance_agent_instances",
            "Registered instances by the outcome of their last scrape (pending: never scraped).",
            labels=("status",),
        )
        for status, count in counts.items():
            family.add_metric((status,), count)
        yield family
