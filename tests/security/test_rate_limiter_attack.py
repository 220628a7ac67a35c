"""Issue 13, finding 5: the rate limiter could be bypassed with X-Forwarded-For and exhausted.

Before: `serve` started uvicorn with proxy headers on, which believes X-Forwarded-For from any
local peer, so a client on the same host got a fresh bucket per request (105 of 105 answered,
never a 429); and past 100,000 tracked clients every newcomer scanned them all, pegging a core
(health p50 240 ms) with no memory cap. These tests replay both against the agent served by
uvicorn, as users run it, and measure what the issue bounds: statuses, health p99 during the
flood and resident memory (from /proc).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from performance_agent.app import create_app
from performance_agent.edge import EdgeMiddleware
from performance_agent.ratelimit import DEFAULT_MAX_CLIENTS
from tests.agent_process import ServedAgent
from tests.conftest import assert_envelope, make_settings, peer_client

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

LIMITED = {"PERF_AGENT_RATE_LIMIT_PER_MINUTE": "100", "PERF_AGENT_RATE_LIMIT_PER_HOUR": "1000"}
MIB = 1024 * 1024


def _rss_bytes(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "VmRSS":
            return int(value.split()[0]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServedAgent]:
    settings: dict[str, str] = getattr(request, "param", {})
    agent = ServedAgent(tmp_path / "agent.db", tmp_path / "agent.log", headers={}, settings={**LIMITED, **settings})
    try:
        yield agent
    finally:
        agent.stop()


def test_a_fresh_forwarded_for_per_request_does_not_escape_the_limit(served: ServedAgent) -> None:
    with httpx.Client(base_url=served.base, timeout=10) as client:
        started = time.monotonic()
        answers = [
            client.get("/api/v1/capabilities", headers={"X-Forwarded-For": f"198.51.{n // 256}.{n % 256}"})
            for n in range(105)
        ]
        elapsed = time.monotonic() - started
    statuses = [answer.status_code for answer in answers]
    assert statuses[:100] == [200] * 100
    assert statuses[-1] == 429
    # The budget refills at 100 a minute (one per 0.6 s) while the 105 are sent, and no faster.
    assert statuses.count(200) <= 100 + elapsed / 0.6 + 1
    body = assert_envelope(answers[-1], 429, "rate_limited")
    assert body["context"]["limit"] == 100
    assert int(answers[-1].headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "served",
    [{"PERF_AGENT_TRUSTED_PROXIES": "127.0.0.1/32", "PERF_AGENT_RATE_LIMIT_MAX_CLIENTS": "1500"}],
    indirect=True,
)
def test_a_flood_of_distinct_clients_keeps_health_fast_and_memory_bounded(served: ServedAgent) -> None:
    """Behind a trusted proxy every forwarded address is a client: 4,000 of them, past a cap of 1,500."""
    with httpx.Client(base_url=served.base, timeout=10) as client:
        for _ in range(200):  # warm up: allocator arenas, label children, caches
            client.get("/api/v1/capabilities", headers={"X-Forwarded-For": "192.0.2.1"})
    baseline = _rss_bytes(served.process.pid)
    flood_statuses: list[int] = []
    done = threading.Event()

    def flood() -> None:
        try:
            with httpx.Client(base_url=served.base, timeout=10) as client:
                for n in range(4_000):
                    forwarded = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
                    flood_statuses.append(
                        client.get("/api/v1/capabilities", headers={"X-Forwarded-For": forwarded}).status_code
                    )
        finally:
            done.set()

    attacker = threading.Thread(target=flood, daemon=True)
    attacker.start()
    health_s: list[float] = []
    with httpx.Client(base_url=served.base, timeout=10) as probe:
        while not done.is_set():
            started = time.perf_counter()
            assert probe.get("/api/v1/health").status_code == 200
            health_s.append(time.perf_counter() - started)
            time.sleep(0.01)
    attacker.join(timeout=60)
    growth = _rss_bytes(served.process.pid) - baseline

    assert flood_statuses == [200] * 4_000  # each is a distinct client with a full budget
    assert len(health_s) >= 20
    p99 = statistics.quantiles(health_s, n=100)[98]
    assert p99 < 0.1, f"health p99 {p99 * 1000:.1f} ms during the flood"
    assert growth < 100 * MIB, f"RSS grew {growth / MIB:.1f} MiB"


def test_100k_distinct_clients_are_capped_and_cost_bounded_memory() -> None:
    """The app's own limiter, driven in-process past its default cap (as many hits as the old scan made slow)."""
    app = create_app(make_settings(rate_limit_per_minute=100, rate_limit_per_hour=1000, trusted_proxies=["10.0.0.0/8"]))
    edge = app.asgi_handler
    assert isinstance(edge, EdgeMiddleware)
    clients = [f"ip:10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(150_000)]
    baseline = _rss_bytes("self")
    for client in clients:
        assert edge.limiter.hit(client)[0]
    growth = _rss_bytes("self") - baseline
    assert edge.limiter.tracked_clients == DEFAULT_MAX_CLIENTS
    assert edge.limiter.clients_oldest_first()[0] == clients[150_000 - DEFAULT_MAX_CLIENTS]
    # docs/operations.md promises about 280 bytes a client: 100,000 of them about 30 MiB.
    assert growth < 64 * MIB, f"RSS grew {growth / MIB:.1f} MiB for {DEFAULT_MAX_CLIENTS} clients"

    async def health_through_a_new_client() -> list[int]:
        async with peer_client(app, "10.0.0.2") as client:
            headers = {"X-Forwarded-For": "203.0.113.99"}
            return [
                (await client.get("/api/v1/health")).status_code,
                (await client.get("/api/v1/capabilities", headers=headers)).status_code,
            ]

    assert asyncio.run(health_through_a_new_client()) == [200, 200]
    assert edge.limiter.tracked_clients == DEFAULT_MAX_CLIENTS
    assert edge.limiter.clients_oldest_first()[-1] == "ip:203.0.113.99"
