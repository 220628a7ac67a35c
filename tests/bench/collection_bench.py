"""One collection cycle over 200 simulated vLLM instances, and history reads over 10,000 snapshots.

The simulator runs in its own process (as real servers would be elsewhere), so the agent's CPU
seconds are its own; the cycle is timed inside the agent process with `Collector.collect_all`.
History is read through the HTTP API (Litestar's test client) from a real SQLite file.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgspec
from litestar.testing import TestClient

from performance_agent.app import create_app
from performance_agent.metrics.collector import Collector
from performance_agent.metrics.snapshot import InstanceSnapshot
from tests.bench.figures import Figure
from tests.conftest import make_settings
from tests.paths import REPO_ROOT

COMMAND = "make bench  (tests/bench/collection_bench.py)"
FLEET = 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def simulated_fleet(count: int) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "performance_agent", "simulate", "--engine", "vllm", "--count", str(count),
               "--single-port", "--base-port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/i/vllm-0/metrics", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=20)


def _collection_cycle(tmp: str) -> list[Figure]:
    settings = make_settings(database=f"{tmp}/cycle.db", scrape_background=False, scrape_concurrency=64)
    with simulated_fleet(FLEET) as endpoint, TestClient(create_app(settings)) as client:
        for i in range(FLEET):
            body = {
                "instance_id": f"vllm-{i}",
                "engine": "vllm",
                "endpoint": endpoint,
                "metrics_path": f"/i/vllm-{i}/metrics",
            }
            assert client.post("/api/v1/instances", json=body).status_code == 201
        agent = client.app.state.context
        collector = Collector(
            instances=agent.instances,
            collection=agent.collection,
            interval_s=15,
            concurrency=settings.scrape_concurrency,
            timeout_s=settings.scrape_timeout_s,
        )
        reports = [client.blocking_portal.call(collector.collect_all) for _ in range(4)]
    steady = reports[1:]  # the first cycle also opens connections and learns label sets
    if any(r.failed for r in reports):
        raise AssertionError(f"scrapes failed during the benchmark: {reports}")
    wall = statistics.median(r.wall_s for r in steady)
    cpu = statistics.median(r.cpu_s for r in steady)
    section = f"Collection cycle ({FLEET} simulated vLLM instances, concurrency 64, median of 3 steady cycles)"
    return [
        Figure(section=section, name="wall time per cycle", value=f"{wall:.2f} s", target="< 2 s",
               met=wall < 2, command=COMMAND),
        Figure(section=section, name="agent CPU per 100 instances", value=f"{cpu / FLEET * 100:.2f} CPU-s",
               target="< 1 CPU-s", met=cpu / FLEET * 100 < 1, command=COMMAND),
        Figure(section=section, name="first cycle (cold connections and caches)",
               value=f"{reports[0].wall_s:.2f} s wall, {reports[0].cpu_s:.2f} CPU-s", target="-", met=None,
               command=COMMAND),
    ]  # fmt: skip


def _history(tmp: str, stored: int = 10_000) -> list[Figure]:
    settings = make_settings(database=f"{tmp}/history.db", scrape_background=False)
    with TestClient(create_app(settings)) as client:
        body = {"instance_id": "vllm-0", "engine": "vllm", "endpoint": "http://127.0.0.1:9"}
        assert client.post("/api/v1/instances", json=body).status_code == 201
        agent = client.app.state.context
        now = datetime.now(UTC)
        raw = b"\x80"  # an empty msgpack map: history reads never decode the raw series
        encode = msgspec.json.encode

        async def fill() -> None:
            for i in range(stored):
                at = now - timedelta(seconds=15 * i)
                snapshot = InstanceSnapshot(
                    instance_id="vllm-0", engine="vllm", endpoint=body["endpoint"], collected_at=at
                )
                await agent.snapshots.add("vllm-0", at, encode(snapshot), raw)

        client.blocking_portal.call(fill)
        figures = []
        for limit, target in ((100, 50.0), (10_000, None)):
            url = f"/api/v1/history/vllm-0?hours=720&limit={limit}"
            assert len(client.get(url).json()) == min(limit, stored)
            times = []
            for _ in range(200 if limit == 100 else 20):
                started = time.perf_counter()
                client.get(url)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99) - 1]
            figures.append(
                Figure(section=f"History ({stored:,} stored snapshots of one instance, SQLite file, via the API)",
                       name=f"GET /history?limit={limit} p50 / p99", value=f"{p50:.1f} ms / {p99:.1f} ms",
                       target="p99 < 50 ms" if target else "-", met=(p99 < target) if target else None,
                       command=COMMAND)
            )  # fmt: skip
    return figures


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="perf-agent-bench-") as tmp:
        os.environ.setdefault("PERF_AGENT_LOG_LEVEL", "WARNING")
        return _collection_cycle(tmp) + _history(tmp)


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value} (target {figure.target})")
