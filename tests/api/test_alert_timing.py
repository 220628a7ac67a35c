"""How soon burn-rate alerts page: a new instance in total breach, and an SLO changed over a breaching history.

Time is the scrapes' own `collected_at` (the evaluator judges at the scrape's instant), so these
tests drive hours of 15 s scrapes without sleeping. The first scrape of a new server has no
previous reading and so no window (`window_s` None), exactly as the collector stores it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from performance_agent.analysis.alerting import AlertEvaluator, AlertMetrics
from performance_agent.analysis.schemas import AlertEvent
from performance_agent.fleet.ports import StoredInstance
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.snapshot import InstanceSnapshot, Latency, Quantiles
from performance_agent.storage.alerts import MemoryAlertRepository
from performance_agent.storage.instances import MemoryStore
from performance_agent.storage.snapshots import MemorySnapshotRepository

FIRST_SCRAPE = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
SCRAPE_S = 15.0
BREACH_ITL_S = 0.5  # the default itl_p99_s target is 0.1 s


class Fleet:
    """One instance, its stored scrapes and an evaluator, scraped on a clock the test advances."""

    def __init__(self, slo: SloTargets | None = None) -> None:
        self.store = MemoryStore()
        self.instance = StoredInstance(
            instance_id="new-0",
            spec=InstanceSpec(engine="vllm", endpoint="http://127.0.0.1:9", slo=slo),
            created_at=FIRST_SCRAPE,
            updated_at=FIRST_SCRAPE,
        )
        self.store.instances["new-0"] = self.instance
        self.snapshots = MemorySnapshotRepository(self.store)
        self.evaluator = AlertEvaluator(
            snapshots=self.snapshots,
            alerts=MemoryAlertRepository(),
            defaults=SloTargets(),
            metrics=AlertMetrics(CollectorRegistry()),
        )
        self.scrapes = 0

    @property
    def now(self) -> datetime:
        return FIRST_SCRAPE + timedelta(seconds=SCRAPE_S * (self.scrapes - 1))

    async def scrape(self, itl_p99_s: float) -> list[AlertEvent]:
        self.scrapes += 1
        first = self.scrapes == 1
        taken = InstanceSnapshot(
            instance_id="new-0",
            engine="vllm",
            endpoint="http://127.0.0.1:9",
            collected_at=self.now,
            window_s=None if first else SCRAPE_S,
            latency=Latency() if first else Latency(itl_s=Quantiles(p99=itl_p99_s, count=500)),
        )
        assert await self.snapshots.add("new-0", taken.collected_at, msgspec.json.encode(taken), b"")
        return await self.evaluator.after_scrape(self.instance, taken)

    async def scrape_until_fired(self, pair: str, itl_p99_s: float, limit_s: float) -> datetime | None:
        """Scrape until `pair` fires; the instant it fired, or None when `limit_s` after the first scrape passed."""
        while self.scrapes == 0 or (self.now - FIRST_SCRAPE).total_seconds() < limit_s:
            events = await self.scrape(itl_p99_s)
            if any(e.kind == "fire" and e.alert.pair == pair for e in events):
                return self.now
        return None


def test_a_new_instance_in_total_breach_pages_fast_within_five_minutes_and_slow_within_thirty() -> None:
    fleet = Fleet()

    fast = asyncio.run(fleet.scrape_until_fired("1h/5m", BREACH_ITL_S, limit_s=3600))
    slow = asyncio.run(fleet.scrape_until_fired("6h/30m", BREACH_ITL_S, limit_s=3600))

    assert fast is not None
    assert slow is not None
    # The short window counts once 90% of it holds data: 270 s of 5 min, 1620 s of 30 min.
    assert (fast - FIRST_SCRAPE).total_seconds() == 270.0
    assert (slow - FIRST_SCRAPE).total_seconds() == 1620.0


def test_one_scrape_short_of_a_covered_short_window_fires_nothing() -> None:
    fleet = Fleet()

    events = asyncio.run(fleet.scrape_until_fired("1h/5m", BREACH_ITL_S, limit_s=255))

    assert events is None
    assert (fleet.now - FIRST_SCRAPE).total_seconds() == 255.0  # 17 windows = 255 s < 270 s


def test_a_stricter_slo_re_judges_the_stored_history_at_the_next_evaluation() -> None:
    fleet = Fleet(slo=SloTargets(itl_p99_s=1.0))

    async def two_hours_then_stricter() -> list[AlertEvent]:
        for _ in range(int(2 * 3600 / SCRAPE_S)):
            assert await fleet.scrape(BREACH_ITL_S) == []  # 0.5 s meets the instance's own 1.0 s target
        # `PUT /instances/{id}/slo` stores the new targets; the collector lists instances at each
        # dispatch, so the next scrape hands the evaluator the instance with the new spec.
        fleet.instance = msgspec.structs.replace(
            fleet.instance, spec=msgspec.structs.replace(fleet.instance.spec, slo=SloTargets(itl_p99_s=0.2))
        )
        return await fleet.scrape(BREACH_ITL_S)

    events = asyncio.run(two_hours_then_stricter())

    assert sorted((e.kind, e.alert.pair) for e in events) == [("fire", "1h/5m"), ("fire", "6h/30m")]
    fast = next(e.alert for e in events if e.alert.pair == "1h/5m")
    assert fast.burn_rate_long == pytest.approx(100.0)  # the whole stored hour breaches 0.2 s, re-judged at once
    assert fast.started_at == fleet.now
