"""The collector's post-scrape hook (SLO alert evaluation): called after each successful scrape only,
and a failing hook never fails the scrape nor stops the others."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import pytest

from performance_agent.fleet.ports import StoredInstance
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.metrics.collector import Collector
from performance_agent.metrics.scraper import ScrapeFailure
from performance_agent.metrics.snapshot import InstanceSnapshot
from performance_agent.storage.instances import MemoryInstanceRepository, MemoryStore

if TYPE_CHECKING:
    from performance_agent.metrics.collection import CollectionService

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeCollection:
    """Scrapes succeed except for instances named `down-*`."""

    async def scrape(self, instance: StoredInstance, *, timeout_s: float) -> InstanceSnapshot:
        if instance.instance_id.startswith("down"):
            raise ScrapeFailure("upstream_unreachable", "refused")
        return InstanceSnapshot(instance_id=instance.instance_id, engine="vllm", endpoint="e", collected_at=T0)


def collector(hook: object) -> Collector:
    store = MemoryStore()
    for name in ("up-0", "up-1", "down-0"):
        spec = InstanceSpec(engine="vllm", endpoint="http://127.0.0.1:9")
        store.instances[name] = StoredInstance(instance_id=name, spec=spec, created_at=T0, updated_at=T0)
    return Collector(
        instances=MemoryInstanceRepository(store),
        collection=cast("CollectionService", FakeCollection()),
        interval_s=10.0,
        concurrency=4,
        timeout_s=1.0,
        after_scrape=hook,  # type: ignore[arg-type]
    )


def test_the_hook_sees_each_successful_scrape() -> None:
    seen: list[tuple[str, str]] = []

    async def hook(instance: StoredInstance, snapshot: InstanceSnapshot) -> None:
        seen.append((instance.instance_id, snapshot.instance_id))

    report = asyncio.run(collector(hook).collect_all())
    assert (report.succeeded, report.failed) == (2, 1)
    assert sorted(seen) == [("up-0", "up-0"), ("up-1", "up-1")]


def test_a_failing_hook_is_logged_and_the_scrape_still_counts(caplog: pytest.LogCaptureFixture) -> None:
    async def hook(instance: StoredInstance, snapshot: InstanceSnapshot) -> None:
        raise RuntimeError("evaluation broke")

    with caplog.at_level(logging.ERROR, logger="performance_agent.metrics.collector"):
        report = asyncio.run(collector(hook).collect_all())
    assert report.succeeded == 2
    assert [r.getMessage() for r in caplog.records] == ["post-scrape hook failed"] * 2
