"""The background collector: schedule and jitter, isolation from slow targets, error survival,
the concurrency bound, retention, and its wiring into the app's lifespan.

Scheduling runs on a fake clock; scrapes go to real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from performance_agent.fleet.ports import StoredInstance
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.metrics.collection import CollectionService, ScrapeMetrics
from performance_agent.metrics.collector import Collector, InstanceStatusCollector, RetentionPruner
from performance_agent.metrics.snapshot import InstanceSnapshot
from performance_agent.outbound.pinned import PinnedClients
from performance_agent.outbound.target_guard import parse_allowlist, system_resolver
from performance_agent.storage.instances import MemoryInstanceRepository, MemoryStore
from performance_agent.storage.snapshots import MemorySnapshotRepository
from tests.conftest import ClientFactory
from tests.scrape_support import ScriptedServer, fixture_page, scripted_server
from tests.unit.storage_support import T0, Repos, full_spec, raw_at, run_with_repos

__all__ = ("scripted_server",)

T = TypeVar("T")
PAGE = fixture_page("sglang-docs-2024-llama31-8b-loaded.prom")
INTERVAL = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoJitter(random.Random):
    """Every instance is due at once, so a test knows exactly what the first tick starts."""

    def uniform(self, a: float, b: float) -> float:
        return a


class CrashingCollection(CollectionService):
    """A collection service with a bug for one instance: the collector must contain it."""

    async def scrape(self, instance: StoredInstance, *, timeout_s: float) -> InstanceSnapshot:
        if instance.instance_id == "boom":
            raise RuntimeError("a bug")
        return await super().scrape(instance, timeout_s=timeout_s)


class Harness:
    def __init__(self, *, concurrency: int = 8, rng: random.Random | None = None, crashing: bool = False) -> None:
        self.store = MemoryStore()
        self.instances = MemoryInstanceRepository(self.store)
        self.snapshots = MemorySnapshotRepository(self.store)
        self.clients = PinnedClients()
        kind = CrashingCollection if crashing else CollectionService
        self.collection = kind(
            instances=self.instances,
            snapshots=self.snapshots,
            clients=self.clients,
            allowlist=parse_allowlist(["127.0.0.1/32"]),
            resolver=system_resolver,
            max_bytes=1 << 20,
            allowed_header_env=frozenset(),
            metrics=ScrapeMetrics(CollectorRegistry()),
        )
        self.clock = FakeClock()
        self.collector = Collector(
            instances=self.instances,
            collection=self.collection,
            interval_s=INTERVAL,
            concurrency=concurrency,
            timeout_s=30.0,
            clock=self.clock,
            rng=rng if rng is not None else NoJitter(),
        )

    async def register(self, instance_id: str, endpoint: str, path: str = "/metrics") -> None:
        spec = InstanceSpec(engine="sglang", endpoint=endpoint, metrics_path=path)
        await self.instances.create(instance_id, spec, datetime.now(UTC))

    async def state(self, instance_id: str) -> StoredInstance:
        stored = await self.instances.get(instance_id)
        assert stored is not None
        return stored

    async def until(self, condition: Callable[[], Awaitable[bool]], deadline_s: float = 10.0) -> None:
        """Wait for a condition (not for a duration): fail if it does not hold within the deadline."""
        give_up = time.monotonic() + deadline_s
        while not await condition():
            assert time.monotonic() < give_up, "condition not reached"
            await asyncio.sleep(0.01)


def run(test: Callable[[Harness], Awaitable[T]], **options: object) -> T:
    async def main() -> T:
        harness = Harness(**options)  # type: ignore[arg-type]
        try:
            return await test(harness)
        finally:
            await harness.collector.cancel_in_flight()
            await harness.clients.aclose()

    return asyncio.run(main())


@pytest.fixture
def slow_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    server.serve("/metrics", stall=True)
    yield server
    server.stop()


def test_each_instance_is_scraped_once_per_interval(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", PAGE)

    async def test(h: Harness) -> None:
        for name in ("a", "b"):
            await h.register(name, scripted_server.endpoint)
        assert sorted(await h.collector.dispatch_due()) == ["a", "b"]
        await h.collector.wait_in_flight()
        assert [await h.snapshots.count(name) for name in ("a", "b")] == [1, 1]
        assert (await h.state("a")).state.status == "up"
        h.clock.now += INTERVAL - 0.5
        assert await h.collector.dispatch_due() == []
        h.clock.now += 0.5
        assert sorted(await h.collector.dispatch_due()) == ["a", "b"]
        await h.collector.wait_in_flight()
        assert [await h.snapshots.count(name) for name in ("a", "b")] == [2, 2]
        await h.instances.delete("b")
        h.clock.now += INTERVAL
        assert await h.collector.dispatch_due() == ["a"]
        await h.collector.wait_in_flight()

    run(test)
    assert len(scripted_server.requests) == 5


def test_first_scrapes_are_spread_over_one_interval(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", PAGE)

    async def test(h: Harness) -> dict[str, float]:
        for index in range(20):
            await h.register(f"i{index}", scripted_server.endpoint)
        started_at: dict[str, float] = {}
        start = h.clock.now
        while h.clock.now < start + INTERVAL:
            for instance_id in await h.collector.dispatch_due():
                assert instance_id not in started_at
                started_at[instance_id] = h.clock.now - start
            await h.collector.wait_in_flight()
            h.clock.now += 0.5
        return started_at

    started_at = run(test, rng=random.Random(7))
    assert len(started_at) == 20  # every instance within its first interval, exactly once
    assert len(set(started_at.values())) >= 8  # and not all at the same moment
    assert all(0 <= offset < INTERVAL for offset in started_at.values())


def test_a_slow_target_never_delays_the_others(scripted_server: ScriptedServer, slow_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", PAGE)

    async def test(h: Harness) -> None:
        await h.register("slow", slow_server.endpoint)
        await h.register("fast", scripted_server.endpoint)
        assert sorted(await h.collector.dispatch_due()) == ["fast", "slow"]

        async def fast_scraped(times: int) -> bool:
            return await h.snapshots.count("fast") == times

        await h.until(lambda: fast_scraped(1))
        assert h.collector.in_flight == frozenset({"slow"})
        h.clock.now += INTERVAL
        assert await h.collector.dispatch_due() == ["fast"]  # the slow one is not piled up
        await h.until(lambda: fast_scraped(2))
        assert h.collector.in_flight == frozenset({"slow"})
        assert (await h.state("slow")).state.status == "pending"

        async def slow_requested() -> bool:  # its request may still be on its way under load
            return bool(slow_server.requests)

        await h.until(slow_requested)

    run(test)
    assert len(slow_server.requests) == 1


def test_the_loop_survives_every_per_target_error(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", PAGE)
    scripted_server.serve("/garbage", b"<html>oops</html>")

    async def test(h: Harness) -> None:
        await h.register("boom", scripted_server.endpoint)
        await h.register("dead", "http://127.0.0.1:1")
        await h.register("garbage", scripted_server.endpoint, "/garbage")
        await h.register("refused", "http://169.254.169.254")
        await h.register("good", scripted_server.endpoint)
        for _ in range(2):
            assert len(await h.collector.dispatch_due()) == 5
            await h.collector.wait_in_flight()
            h.clock.now += INTERVAL
        codes = {}
        for name in ("boom", "dead", "garbage", "refused"):
            state = (await h.state(name)).state
            assert state.status == "down"
            assert state.consecutive_failures == 2
            assert state.last_error is not None
            codes[name] = state.last_error.code
        assert codes == {
            "boom": "internal_error",
            "dead": "upstream_unreachable",
            "garbage": "upstream_invalid_metrics",
            "refused": "target_not_allowed",
        }
        assert (await h.state("boom")).state.last_error.message == "the scrape crashed: RuntimeError"  # type: ignore[union-attr]
        assert await h.snapshots.count("good") == 2

    run(test, crashing=True)


def test_concurrency_is_bounded(slow_server: ScriptedServer) -> None:
    async def test(h: Harness) -> None:
        for index in range(5):
            await h.register(f"i{index}", slow_server.endpoint)
        assert len(await h.collector.dispatch_due()) == 5

        async def two_waiting() -> bool:
            return len(slow_server.requests) >= 2

        await h.until(two_waiting)
        slow_server.release.set()  # stalled answers now end (as failures), freeing the slots
        await h.collector.wait_in_flight()

    run(test, concurrency=2)
    assert len(slow_server.requests) == 5
    assert slow_server.max_active <= 2


def test_instances_by_status_are_read_from_the_last_pass_at_scrape_time(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", PAGE)
    registry = CollectorRegistry()

    async def test(h: Harness) -> None:
        registry.register(InstanceStatusCollector(h.collector))
        assert registry.get_sample_value("performance_agent_instances", {"status": "up"}) is None  # no pass yet
        await h.register("up-0", scripted_server.endpoint)
        await h.register("down-0", "http://127.0.0.1:1")
        await h.collector.dispatch_due()
        await h.collector.wait_in_flight()
        await h.register("new-0", scripted_server.endpoint)
        h.clock.now += 1
        await h.collector.dispatch_due()

    run(test)

    def gauge(status: str) -> float | None:
        return registry.get_sample_value("performance_agent_instances", {"status": status})

    assert (gauge("up"), gauge("down"), gauge("pending")) == (1.0, 1.0, 1.0)


def test_run_beats_dispatches_and_cancels_in_flight_scrapes_when_stopped(
    scripted_server: ScriptedServer, slow_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", PAGE)
    beats: list[float] = []

    async def test(h: Harness) -> None:
        await h.register("fast", scripted_server.endpoint)
        await h.register("slow", slow_server.endpoint)
        sleeps: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            await h.until(lambda: _count_is(h, "fast", 1))
            if len(sleeps) == 3:
                raise asyncio.CancelledError
            h.clock.now += seconds

        h.collector._sleep = fake_sleep
        with pytest.raises(asyncio.CancelledError):
            await h.collector.run(lambda: beats.append(h.clock.now))
        assert h.collector.in_flight == frozenset()
        assert sleeps == [h.collector.tick_s] * 3
        assert await h.snapshots.count("fast") == 1

    run(test)
    assert len(beats) == 3


async def _count_is(h: Harness, instance_id: str, count: int) -> bool:
    return await h.snapshots.count(instance_id) == count


def test_collect_all_reports_the_cycle(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", PAGE)

    async def test(h: Harness) -> None:
        for name in ("a", "b"):
            await h.register(name, scripted_server.endpoint)
        await h.register("dead", "http://127.0.0.1:1")
        report = await h.collector.collect_all()
        assert (report.instances, report.succeeded, report.failed) == (3, 2, 1)
        assert report.wall_s > 0
        assert report.cpu_s >= 0

    run(test)


def test_retention_prunes_history_older_than_the_setting() -> None:
    async def test(h: Harness) -> None:
        await h.register("a", "http://127.0.0.1:1")
        for minute in (0, 30, 110, 150):
            collected_at, raw = raw_at(minute)
            await h.snapshots.add("a", collected_at, b"{}", raw)
        now = raw_at(150)[0] + timedelta(minutes=10)
        pruner = RetentionPruner(h.snapshots, retention_hours=1, now=lambda: now)
        assert await pruner.prune_once() == 2
        assert await h.snapshots.count("a") == 2
        assert await pruner.prune_once() == 0

        sleeps: list[float] = []

        async def stop_after_one(seconds: float) -> None:
            sleeps.append(seconds)
            raise asyncio.CancelledError

        later = now + timedelta(hours=1)
        looping = RetentionPruner(h.snapshots, retention_hours=1, now=lambda: later, sleep=stop_after_one)
        with pytest.raises(asyncio.CancelledError):
            await looping.run(lambda: None)
        assert await h.snapshots.count("a") == 0
        assert sleeps == [300.0]

    run(test)


# --------------------------------------------------------------------------- wired into the app


def wait_for_history(client: TestClient[Litestar], instance_id: str, count: int) -> list[dict[str, object]]:
    give_up = time.monotonic() + 20
    while True:
        snapshots: list[dict[str, object]] = client.get(f"/api/v1/history/{instance_id}").json()
        if len(snapshots) >= count:
            return snapshots
        assert time.monotonic() < give_up, f"only {len(snapshots)} snapshots collected"
        time.sleep(0.02)


def test_the_app_collects_registered_instances_in_the_background(
    client_factory: ClientFactory, scripted_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", PAGE)
    client = client_factory(scrape_interval_s=0.05)
    registration = {"instance_id": "sg-0", "engine": "sglang", "endpoint": scripted_server.endpoint}
    assert client.post("/api/v1/instances", json=registration).status_code == 201
    snapshots = wait_for_history(client, "sg-0", 2)
    assert snapshots[0]["window_s"] is not None
    assert client.get("/api/v1/instances/sg-0").json()["status"] == "up"
    checks = {check["name"]: check for check in client.get("/api/v1/health/detailed").json()["checks"]}
    assert checks["loop:collector"]["status"] == "healthy"
    assert checks["loop:history-retention"]["status"] == "healthy"


def test_background_collection_can_be_turned_off(client_factory: ClientFactory) -> None:
    client = client_factory(scrape_background=False)
    names = {check["name"] for check in client.get("/api/v1/health/detailed").json()["checks"]}
    assert "loop:collector" not in names
    assert "loop:history-retention" in names


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_history_is_pruned_to_its_size_cap_oldest_first_keeping_each_latest(kind: str, tmp_path: Path) -> None:
    async def check(repos: Repos) -> None:
        snapshots = repos.snapshots
        for instance_id in ("a", "b"):
            await repos.instances.create(instance_id, full_spec(), T0)
        raw = raw_at(0)[1]
        await snapshots.add("b", raw_at(0)[0] - timedelta(minutes=1), b"y" * 5000, raw)
        for minute in range(10):
            collected_at, raw = raw_at(minute)
            await snapshots.add("a", collected_at, b"x" * 1000, raw)
        row_bytes = 1000 + len(raw)
        now = raw_at(10)[0]
        pruner = RetentionPruner(snapshots, 24 * 365, max_bytes=4 * row_bytes + 5000 + len(raw), now=lambda: now)
        assert await pruner.prune_once() == 6
        assert await snapshots.count("a") == 4
        assert await snapshots.count("b") == 1  # older than every row of "a", but its instance's latest
        assert await RetentionPruner(snapshots, 24 * 365, max_bytes=1 << 20, now=lambda: now).prune_once() == 0
        assert await snapshots.prune_to_size(1) == 3
        assert (await snapshots.count("a"), await snapshots.count("b")) == (1, 1)

    run_with_repos(kind, tmp_path / "agent.db", check)
