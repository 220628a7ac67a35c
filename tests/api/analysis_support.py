"""History for analysis tests: real simulator pages, run through the agent's own parse/adapt/build path.

The simulator is driven in simulated time (a manual clock), and each page is stored with a
chosen `collected_at`, so a test can place fifteen minutes of scrapes anywhere in the past
without waiting for them.
"""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from performance_agent.engines.registry import adapt_page
from performance_agent.metrics.builder import build_snapshot, encode_raw_scrape, raw_scrape
from performance_agent.metrics.exposition import parse_page
from performance_agent.simulator import ManualClock, SimulatedInstance, SimulatedServerSpec, Workload

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import TestClient

    from performance_agent.context import AgentContext
    from performance_agent.metrics.builder import RawScrape

__all__ = ("Receiver", "register", "seed_history", "simulated")

_encoder = msgspec.json.Encoder()


def register(client: TestClient[Litestar], instance_id: str, engine: str = "vllm", **fields: Any) -> dict[str, Any]:
    """Register an instance at a closed local port (never scraped: tests turn background scraping off)."""
    body = {"instance_id": instance_id, "engine": engine, "endpoint": "http://127.0.0.1:9", **fields}
    response = client.post("/api/v1/instances", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def simulated(
    engine: str,
    *,
    faults: dict[str, object] | None = None,
    workload: Workload | None = None,
    flags: dict[str, object] | None = None,
    seed: int = 1,
) -> tuple[SimulatedInstance, ManualClock]:
    clock = ManualClock()
    instance = SimulatedInstance(
        SimulatedServerSpec(engine=engine, seed=seed, workload=workload or Workload(), flags=flags or {}),
        engine,
        clock,
    )
    if faults:
        instance.set_faults(dict(faults))
    clock.advance(120.0)  # warm up: the batch fills before the first scrape
    return instance, clock


def seed_history(
    client: TestClient[Litestar],
    instance_id: str,
    server: SimulatedInstance,
    clock: ManualClock,
    *,
    scrapes: int = 21,
    interval_s: float = 15.0,
    end: datetime | None = None,
) -> list[RawScrape]:
    """Store `scrapes` scrapes of `server`, `interval_s` apart (simulated and stored), the last at `end`."""
    context: AgentContext = client.app.state.context
    last = end if end is not None else datetime.now(UTC) - timedelta(seconds=1)
    engine = server.spec.engine
    stored: list[tuple[datetime, bytes, bytes]] = []
    raws: list[RawScrape] = []
    previous: RawScrape | None = None
    for index in range(scrapes):
        collected_at = last - timedelta(seconds=interval_s * (scrapes - 1 - index))
        adapted = adapt_page(engine, parse_page(server.metrics_text()))
        snapshot = build_snapshot(
            instance_id=instance_id,
            engine=engine,
            endpoint="http://127.0.0.1:9",
            collected_at=collected_at,
            current=adapted,
            previous=previous,
        )
        previous = raw_scrape(adapted, collected_at)
        raws.append(previous)
        stored.append((collected_at, _encoder.encode(snapshot), encode_raw_scrape(previous)))
        clock.advance(interval_s)

    async def write() -> None:
        for collected_at, document, raw in stored:
            assert await context.snapshots.add(instance_id, collected_at, document, raw)

    portal = client.blocking_portal
    assert portal is not None
    portal.call(write)
    return raws


class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST body; answers with the scripted statuses, then 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                with receiver._arrived:
                    receiver.bodies.append(json.loads(self.rfile.read(length)))
                    receiver._arrived.notify_all()
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The first `count` bodies, once they arrived (sent by a background loop); fails after `timeout_s`."""
        with self._arrived:
            arrived = self._arrived.wait_for(lambda: len(self.bodies) >= count, timeout=timeout_s)
        assert arrived, f"{len(self.bodies)} of {count} notifications arrived within {timeout_s} s"
        return self.bodies[:count]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
