"""`POST /analyze` and `POST /optimize` over an instance with 10,000 stored snapshots.

The history is real: a simulated vLLM server is driven in simulated time (15 s between scrapes,
about 42 hours in all, inside the default 168-hour SLO period, with a stretch of latency
regression and one of errors so the SLO math has bad windows to count), and every page goes
through the agent's own parse/adapt/build path before it is stored through the snapshot
repository in a SQLite file. Each call therefore judges 10,000 scrape windows for the SLO report
and sums the analysis window's cumulative series.

Calls go through the HTTP stack (Litestar's test client), one at a time, after a few warm-up
calls, in two phases: with the history unchanged between calls, and with a fresh scrape of the
simulated server stored before every call (it defeats any reuse of the previous call's work).
In that phase scrapes land tens of milliseconds apart instead of 15 s, so the 15-minute window
keeps every one of them and grows from 60 to a few hundred scrapes (the figure names the
counts); a window's figures sum every scrape-to-scrape increase in it, so the cost grows with it.
The first call after start-up (nothing decoded yet) is reported apart.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.testing import TestClient

from performance_agent.app import create_app
from performance_agent.engines.registry import adapt_page
from performance_agent.metrics.builder import (
    RawScrape,
    build_snapshot,
    decode_raw_scrape,
    encode_raw_scrape,
    raw_scrape,
)
from performance_agent.metrics.exposition import parse_page
from performance_agent.metrics.snapshot import InstanceSnapshot
from performance_agent.simulator import ManualClock, SimulatedInstance, SimulatedServerSpec, Workload
from tests.bench.figures import Figure
from tests.conftest import make_settings

if TYPE_CHECKING:
    from litestar import Litestar

COMMAND = "make bench  (tests/bench/analysis_bench.py)"
STORED = 10_000
INTERVAL_S = 15.0
CALLS = 200
ENDPOINT = "http://127.0.0.1:9"
BODY = {"instance_id": "vllm-0"}

_encoder = msgspec.json.Encoder()
_snapshot_decoder = msgspec.json.Decoder(InstanceSnapshot)

Row = tuple[datetime, bytes, bytes]


class Server:
    """The simulated vLLM server behind the history, which keeps running for the live phase."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.instance = SimulatedInstance(
            SimulatedServerSpec(engine="vllm", seed=7, workload=Workload()), "vllm", self.clock
        )
        self.clock.advance(120.0)

    def scrape(self, collected_at: datetime, previous: RawScrape | None) -> tuple[Row, RawScrape]:
        adapted = adapt_page("vllm", parse_page(self.instance.metrics_text()))
        snapshot = build_snapshot(
            instance_id="vllm-0",
            engine="vllm",
            endpoint=ENDPOINT,
            collected_at=collected_at,
            current=adapted,
            previous=previous,
        )
        raw = raw_scrape(adapted, collected_at)
        return (collected_at, _encoder.encode(snapshot), encode_raw_scrape(raw)), raw


def simulated_history(server: Server, count: int, end: datetime) -> list[Row]:
    """`count` scrapes `INTERVAL_S` apart, the last at `end`; a tenth of them slow, a twentieth failing."""
    troubles: dict[int, dict[str, object]] = {
        count * 4 // 10: {"latency_regression": 3.0},
        count * 5 // 10: {"clear": True},
        count * 7 // 10: {"error_burst": 0.05},
        count * 75 // 100: {"clear": True},
    }
    previous: RawScrape | None = None
    rows = []
    for index in range(count):
        if index in troubles:
            server.instance.set_faults(troubles[index])
        row, previous = server.scrape(end - timedelta(seconds=INTERVAL_S * (count - 1 - index)), previous)
        rows.append(row)
        server.clock.advance(INTERVAL_S)
    return rows


def store_history(client: TestClient[Litestar], rows: list[Row]) -> None:
    """Store the rows moved in time so that the newest is one second old (generating them takes minutes)."""
    snapshots = client.app.state.context.snapshots
    shift = datetime.now(UTC) - timedelta(seconds=1) - rows[-1][0]

    async def fill() -> None:
        for collected_at, document, raw in rows:
            snapshot = _snapshot_decoder.decode(document)
            snapshot.collected_at += shift
            for model in snapshot.models:
                model.collected_at += shift
            scrape = decode_raw_scrape(raw)
            scrape.collected_at += shift
            if not await snapshots.add(
                "vllm-0", collected_at + shift, _encoder.encode(snapshot), encode_raw_scrape(scrape)
            ):
                raise AssertionError("the instance vanished while its history was stored")

    _call(client, fill)


def _call(client: TestClient[Litestar], function: Any) -> Any:
    portal = client.blocking_portal
    assert portal is not None
    return portal.call(function)


def _scrape_now(client: TestClient[Litestar], server: Server) -> None:
    """Store a scrape taken now, over the real seconds since the newest stored one (as the collector would)."""
    snapshots = client.app.state.context.snapshots

    async def scrape() -> None:
        previous = await snapshots.latest_raw("vllm-0")
        assert previous is not None
        now = datetime.now(UTC)
        server.clock.advance((now - previous.collected_at).total_seconds())
        (collected_at, document, raw), _ = server.scrape(now, previous)
        if not await snapshots.add("vllm-0", collected_at, document, raw):
            raise AssertionError("the instance vanished")

    _call(client, scrape)


def _post(client: TestClient[Litestar], path: str) -> float:
    started = time.perf_counter()
    response = client.post(path, json=BODY)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code not in (200, 201):
        raise AssertionError(f"{path} answered {response.status_code}: {response.text}")
    return elapsed


def _timed(client: TestClient[Litestar], path: str, calls: int, server: Server | None = None) -> list[float]:
    """Sorted milliseconds per call; with `server`, a fresh scrape is stored (untimed) before each call."""
    for _ in range(5):  # warm-up
        _post(client, path)
    times = []
    for _ in range(calls):
        if server is not None:
            _scrape_now(client, server)
        times.append(_post(client, path))
    return sorted(times)


def percentile(times: list[float], fraction: float) -> float:
    return times[min(len(times) - 1, int(len(times) * fraction))]


def measure(database: str, server: Server, rows: list[Row], calls: int = CALLS) -> dict[str, list[float]]:
    settings = make_settings(database=database, scrape_background=False)
    with TestClient(create_app(settings)) as client:
        body = {"instance_id": "vllm-0", "engine": "vllm", "endpoint": ENDPOINT}
        response = client.post("/api/v1/instances", json=body)
        if response.status_code != 201:
            raise AssertionError(response.text)
        store_history(client, rows)
        rows.clear()  # the history now lives in the database only, as it would in the agent
        first = _post(client, "/api/v1/analyze")
        analyzed = client.post("/api/v1/analyze", json=BODY).json()
        if analyzed["window"]["scrapes"] < 50:
            raise AssertionError(f"the analysis window holds too few scrapes: {analyzed['window']}")
        spent = [o["objective"] for o in analyzed["slo"]["objectives"] if (o["error_budget_remaining"] or 1.0) < 1.0]
        if not spent:
            raise AssertionError(f"the history should hold bad windows: {analyzed['slo']}")
        timings = {
            "first analyze": [first],
            "analyze": _timed(client, "/api/v1/analyze", calls),
            "optimize": _timed(client, "/api/v1/optimize", calls),
        }
        for path in ("/api/v1/analyze", "/api/v1/optimize"):
            before = _window_scrapes(client)
            times = _timed(client, path, calls, server)
            # A scrape lands before every call, tens of ms apart instead of 15 s: the window keeps them all.
            name = f"{path.rsplit('/', 1)[-1]}, a new scrape before each call (window: {before} to "
            timings[f"{name}{_window_scrapes(client)} scrapes)"] = times
        return timings


def _window_scrapes(client: TestClient[Litestar]) -> int:
    scrapes: int = client.post("/api/v1/analyze", json=BODY).json()["window"]["scrapes"]
    return scrapes


def run() -> list[Figure]:
    os.environ.setdefault("PERF_AGENT_LOG_LEVEL", "WARNING")
    server = Server()
    rows = simulated_history(server, STORED, datetime.now(UTC))
    with tempfile.TemporaryDirectory(prefix="perf-agent-bench-") as tmp:
        timings = measure(f"{tmp}/analysis.db", server, rows)
    section = f"Analysis ({STORED:,} stored snapshots of one vLLM instance, SQLite file, via the API, {CALLS} calls)"
    figures = []
    for name, times in timings.items():
        if len(times) == 1:
            figures.append(
                Figure(section=section, name=f"POST /{name} after start-up (history not yet decoded)",
                       value=f"{times[0]:.1f} ms", target="-", met=None, command=COMMAND)
            )  # fmt: skip
            continue
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        figures.append(
            Figure(section=section, name=f"POST /{name}: p50 / p99", value=f"{p50:.1f} ms / {p99:.1f} ms",
                   target="p99 < 50 ms", met=p99 < 50.0, command=COMMAND)
        )  # fmt: skip
    return figures


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value} (target {figure.target})")
