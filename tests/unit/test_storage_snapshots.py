"""The snapshot repository contract (history order, windows, pruning), on SQLite and in memory."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from pathlib import Path

import pytest

from performance_agent.metrics.builder import decode_raw_scrape, encode_raw_scrape
from performance_agent.storage.database import SqliteDatabase
from performance_agent.storage.snapshots import SqlSnapshotRepository
from performance_agent.storage.sql import SqlConnection
from tests.unit.storage_support import BACKENDS, T0, Repos, full_spec, raw_at, run_with_repos


@pytest.fixture(params=[*BACKENDS, "memory"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def store_minutes(repos: Repos, instance_id: str, minutes: list[int]) -> None:
    await repos.instances.create(instance_id, full_spec(), T0)
    for minute in minutes:
        collected_at, raw = raw_at(minute, requests=10.0 * (minute + 1))
        await repos.snapshots.add(instance_id, collected_at, f'{{"minute":{minute}}}'.encode(), raw)


def test_history_is_newest_first_within_the_window_and_the_limit(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await store_minutes(repos, "a", [3, 0, 2, 1, 4])  # stored out of order on purpose
        await store_minutes(repos, "b", [0, 1])
        everything = await repos.snapshots.history_json("a", T0, 100)
        assert everything == [b'{"minute":4}', b'{"minute":3}', b'{"minute":2}', b'{"minute":1}', b'{"minute":0}']
        assert await repos.snapshots.history_json("a", T0, 2) == [b'{"minute":4}', b'{"minute":3}']
        since_two = await repos.snapshots.history_json("a", T0 + timedelta(minutes=2), 100)
        assert since_two == [b'{"minute":4}', b'{"minute":3}', b'{"minute":2}']
        assert await repos.snapshots.history_json("a", T0 + timedelta(minutes=5), 100) == []
        assert await repos.snapshots.history_json("unknown", T0, 100) == []
        assert await repos.snapshots.count("a") == 5

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_the_latest_raw_series_is_the_baseline_with_infinity_kept(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        assert await repos.snapshots.latest_raw("a") is None
        await store_minutes(repos, "a", [0, 2, 1])
        latest = await repos.snapshots.latest_raw("a")
        assert latest is not None
        assert latest.collected_at == T0 + timedelta(minutes=2)
        assert latest.total.counters == {"requests_finished": 30.0}
        histogram = latest.total.histograms["ttft_s"]
        assert histogram.buckets == [(0.1, 15.0), (math.inf, 30.0)]
        assert latest.total.process_start_time_s == T0.timestamp() - 60

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_raw_between_is_oldest_first_and_inclusive(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await store_minutes(repos, "a", [0, 1, 2, 3, 4])
        window = await repos.snapshots.raw_between("a", T0 + timedelta(minutes=1), T0 + timedelta(minutes=3))
        assert [scrape.total.counters["requests_finished"] for scrape in window] == [20.0, 30.0, 40.0]

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_prune_deletes_only_what_is_older_than_the_cutoff(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await store_minutes(repos, "a", [0, 1, 2, 3])
        await store_minutes(repos, "b", [0, 5])
        assert await repos.snapshots.prune(T0 + timedelta(minutes=2)) == 3
        assert await repos.snapshots.history_json("a", T0, 100) == [b'{"minute":3}', b'{"minute":2}']
        assert await repos.snapshots.history_json("b", T0, 100) == [b'{"minute":5}']
        assert await repos.snapshots.prune(T0 + timedelta(minutes=2)) == 0

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_sqlite_prunes_a_backlog_larger_than_one_batch(tmp_path: Path) -> None:
    async def body() -> int:
        database = SqliteDatabase(str(tmp_path / "agent.db"))
        await database.open()
        try:
            _, raw = raw_at(0)
            rows = [("a", T0.timestamp() + i, b"{}", raw) for i in range(12_003)]

            def insert(connection: SqlConnection) -> None:
                with connection.transaction():
                    connection.executemany(
                        "INSERT INTO snapshots (instance_id, collected_at, snapshot, raw) VALUES (?, ?, ?, ?)", rows
                    )

            await database.run(insert)
            repository = SqlSnapshotRepository(database)
            removed = await repository.prune(T0 + timedelta(seconds=12_000))
            assert await repository.count("a") == 3
            return removed
        finally:
            await database.close()

    assert asyncio.run(body()) == 12_000


def test_raw_series_survive_encoding() -> None:
    collected_at, raw = raw_at(7, requests=4.0)
    decoded = decode_raw_scrape(raw)
    assert decoded.collected_at == collected_at
    assert decoded.total.histograms["ttft_s"].buckets[-1] == (math.inf, 4.0)
    assert encode_raw_scrape(decoded) == raw
