"""The observer's freshness rule: a stored reading ends a window when fresh and new, else the instance is scraped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import pytest

from performance_agent.fleet.schemas import InstanceError, InstanceSpec
from performance_agent.storage.instances import MemoryInstanceRepository, MemoryStore
from performance_agent.storage.snapshots import MemorySnapshotRepository
from performance_agent.workflows.observer import CohortObserver

if TYPE_CHECKING:
    from performance_agent.fleet.ports import StoredInstance
    from performance_agent.metrics.collection import CollectionService
    from performance_agent.workflows.observer import Observation

NOW = 1_800_000_000.0


class CountingCollection:
    """Stands in for the collection service: records who was scraped and answers with `NOW`."""

    def __init__(self) -> None:
        self.scraped: list[str] = []

    async def scrape(self, stored: StoredInstance, *, timeout_s: float) -> Any:
        self.scraped.append(stored.instance_id)

        class Snapshot:
            collected_at = datetime.fromtimestamp(NOW, UTC)

        return Snapshot()


async def _observer(max_age_s: float) -> tuple[CohortObserver, CountingCollection]:
    store = MemoryStore()
    instances = MemoryInstanceRepository(store)
    for instance_id in ("fresh", "stale", "down", "unseen"):
        spec = InstanceSpec(engine="vllm", endpoint="http://127.0.0.1:9100")
        await instances.create(instance_id, spec, datetime.fromtimestamp(NOW - 100, UTC))
    seen_at = {"fresh": NOW - 10, "stale": NOW - 40, "down": NOW - 5}
    for instance_id, stamp in seen_at.items():
        state = store.instances[instance_id].state
        state.status, state.last_seen = "up", datetime.fromtimestamp(stamp, UTC)
    await instances.record_failure(
        "down", InstanceError(code="connect_error", message="refused", at=datetime.fromtimestamp(NOW - 1, UTC))
    )
    collection = CountingCollection()
    observer = CohortObserver(
        instances=instances,
        snapshots=MemorySnapshotRepository(store),
        collection=cast("CollectionService", collection),
        timeout_s=1.0,
        max_reading_age_s=max_age_s,
    )
    return observer, collection


def test_fresh_new_readings_are_reused_and_the_rest_scraped() -> None:
    async def scenario() -> tuple[dict[str, Observation], CountingCollection]:
        observer, collection = await _observer(max_age_s=15.0)
        ids = ["fresh", "stale", "down", "unseen"]
        return await observer.observe(ids, now=NOW, interval_s=15.0, after={"fresh": NOW - 25}), collection

    seen, collection = asyncio.run(scenario())
    assert seen["fresh"].collected_at == NOW - 10  # the collector's reading, not a new scrape
    assert sorted(collection.scraped) == ["down", "stale", "unseen"]
    assert all(seen[i].collected_at == NOW for i in ("stale", "down", "unseen"))


@pytest.mark.parametrize(
    ("max_age_s", "interval_s", "after"),
    [
        (0.0, 15.0, None),  # reuse turned off
        (15.0, 5.0, None),  # older than the window's interval
        (15.0, 15.0, {"fresh": NOW - 10}),  # the reading that started the window cannot end it
    ],
)
def test_a_reading_is_not_reused_when_the_rule_says_no(
    max_age_s: float, interval_s: float, after: dict[str, float] | None
) -> None:
    async def scenario() -> tuple[dict[str, Observation], CountingCollection]:
        observer, collection = await _observer(max_age_s)
        return await observer.observe(["fresh"], now=NOW, interval_s=interval_s, after=after), collection

    seen, collection = asyncio.run(scenario())
    assert collection.scraped == ["fresh"]
    assert seen["fresh"].collected_at == NOW


def test_without_now_every_instance_is_scraped() -> None:
    async def scenario() -> CountingCollection:
        observer, collection = await _observer(max_age_s=15.0)
        await observer.observe(["fresh"])
        return collection

    collection = asyncio.run(scenario())
    assert collection.scraped == ["fresh"]
