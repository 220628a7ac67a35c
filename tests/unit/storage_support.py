"""Every repository implementation behind one opener, so every contract test runs on each.

Kinds: `memory` (unit-test doubles), `sqlite` (a file in the test's temp dir) and `postgresql` (a
fresh database on the tests' real PostgreSQL server, tests/postgres_support.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TypeVar

from performance_agent.fleet.ports import InstanceRepository
from performance_agent.fleet.schemas import GpuInfo, HeaderFromEnv, InstanceSpec, ModelInfo
from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.builder import RawScrape, encode_raw_scrape
from performance_agent.metrics.ports import SnapshotRepository
from performance_agent.metrics.snapshot import CumulativeHistogram, RawSeries
from performance_agent.storage.factory import open_database
from performance_agent.storage.instances import MemoryInstanceRepository, MemoryStore, SqlInstanceRepository
from performance_agent.storage.snapshots import MemorySnapshotRepository, SqlSnapshotRepository
from performance_agent.storage.sql import SqlDatabase
from tests.postgres_support import fresh_database_url

__all__ = ("BACKENDS", "T0", "Repos", "database_url", "full_spec", "open_repos", "raw_at", "run_with_repos")

#: The real storage backends every storage contract test runs on.
BACKENDS = ("sqlite", "postgresql")


def database_url(kind: str, path: Path) -> str:
    """A new database of `kind`: the SQLite file `path`, or a fresh PostgreSQL database."""
    if kind == "postgresql":
        return fresh_database_url()
    if kind == "sqlite":
        return f"sqlite:///{path}"
    raise ValueError(f"unknown storage kind {kind!r}")


T = TypeVar("T")
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Repos(NamedTuple):
    instances: InstanceRepository
    snapshots: SnapshotRepository
    database: SqlDatabase | None


@contextlib.asynccontextmanager
async def open_repos(kind: str, path: Path) -> AsyncIterator[Repos]:
    if kind == "memory":
        store = MemoryStore()
        yield Repos(MemoryInstanceRepository(store), MemorySnapshotRepository(store), None)
        return
    database = open_database(database_url(kind, path))
    await database.open()
    try:
        yield Repos(SqlInstanceRepository(database), SqlSnapshotRepository(database), database)
    finally:
        await database.close()


def run_with_repos(kind: str, path: Path, body: Callable[[Repos], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_repos(kind, path) as repos:
            return await body(repos)

    return asyncio.run(main())


def full_spec(engine: str = "vllm", endpoint: str = "http://10.0.0.5:8000") -> InstanceSpec:
    return InstanceSpec(
        engine=engine,
        endpoint=endpoint,
        metrics_path="/i/a/metrics",
        labels={"team": "search", "zone": "b"},
        slo=SloTargets(ttft_p99_s=1.5, error_rate=0.02),
        engine_args={"max_num_seqs": 256, "gpu_memory_utilization": 0.9, "enable_prefix_caching": True},
        gpu=GpuInfo(model="H100", memory_gib=80.0, count=2),
        model=ModelInfo(name="llama", architecture="LlamaForCausalLM", parameters_b=8.0, max_model_len=8192),
        headers={"Authorization": HeaderFromEnv(env="VLLM_TOKEN", prefix="Bearer "), "X-Tenant": "blue"},
        tls_verify=False,
        ca_bundle=None,
    )


def raw_at(minutes: float, requests: float = 10.0) -> tuple[datetime, bytes]:
    """A stored scrape `minutes` after T0 whose counters and histogram depend on `requests`."""
    collected_at = T0 + timedelta(minutes=minutes)
    series = RawSeries(
        counters={"requests_finished": requests},
        histograms={
            "ttft_s": CumulativeHistogram(
                buckets=[(0.1, requests / 2), (math.inf, requests)], sum=requests, count=requests
            )
        },
        gauges={"requests_running": 3.0},
        process_start_time_s=T0.timestamp() - 60,
    )
    return collected_at, encode_raw_scrape(RawScrape(collected_at=collected_at, total=series))
