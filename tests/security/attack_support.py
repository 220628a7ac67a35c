"""What the attack tests measure on the served agent: its memory from /proc and its health latency under attack.

Memory is the resident set (`VmRSS` in /proc/<pid>/status) of the agent process and every
process it started (the page-reader worker), so moving work to a child cannot hide its cost.
Latency is measured by a thread that asks `/api/v1/health/ready` (the Kubernetes readiness
probe, which touches storage) every few milliseconds over one keep-alive connection.
"""

from __future__ import annotations

import gzip
import statistics
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.agent_process import ServedAgent

__all__ = (
    "MIB",
    "HealthProbe",
    "assert_envelope",
    "gzip_of_zeros",
    "process_tree",
    "process_tree_rss",
    "stacked_gzip_of_zeros",
)

MIB = 1024 * 1024


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append(int(entry.name))
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a scan of /proc: a few milliseconds)."""
    found = [pid]
    pending = [pid]
    while pending:
        children = _children(pending.pop())
        found += children
        pending += children
    return found


def process_tree_rss(pid: int, tree: list[int] | None = None) -> int:
    """Bytes resident in `pid` and all its descendants (or in the `tree` already found), now."""
    return sum(_rss(member) for member in (tree if tree is not None else process_tree(pid)))


@dataclass
class HealthProbe:
    """Polls readiness and the process tree's RSS in a thread until stopped; figures for the report."""

    agent: ServedAgent
    interval_s: float = 0.005
    latencies_s: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        pid = self.agent.process.pid
        tree = process_tree(pid)
        with httpx.Client(base_url=self.agent.base, timeout=30) as client:
            last_rss = last_tree = time.monotonic()
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.get("/api/v1/health/ready").status_code
                except httpx.TransportError:
                    status = 0
                self.latencies_s.append(time.perf_counter() - started)
                self.statuses.append(status)
                now = time.monotonic()
                if now - last_tree > 1.0:  # the page reader may have been replaced
                    tree, last_tree = process_tree(pid), now
                if now - last_rss > 0.02:
                    self.peak_rss = max(self.peak_rss, process_tree_rss(pid, tree))
                    last_rss = now
                time.sleep(self.interval_s)

    @property
    def p99_s(self) -> float:
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[98]

    def summary(self, baseline_rss: int) -> str:
        return (
            f"health probes {len(self.latencies_s)}, p50 {statistics.median(self.latencies_s) * 1000:.1f} ms, "
            f"p99 {self.p99_s * 1000:.1f} ms, max {max(self.latencies_s) * 1000:.1f} ms; "
            f"RSS baseline {baseline_rss / MIB:.0f} MiB, peak {self.peak_rss / MIB:.0f} MiB "
            f"(+{(self.peak_rss - baseline_rss) / MIB:.1f} MiB)"
        )


def gzip_of_zeros(size: int) -> bytes:
    """One gzip layer over `size` zero bytes, built in 1 MiB steps (a 1 GiB answer in about 1 MB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(MIB)
    parts = [compressor.compress(chunk) for _ in range(size // MIB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def stacked_gzip_of_zeros(size: int, layers: int) -> bytes:
    """`layers` gzip layers: the `Content-Encoding: gzip, gzip, gzip` answer of a few hundred bytes."""
    body = gzip_of_zeros(size)
    for _ in range(layers - 1):
        body = gzip.compress(body, 9)
    return body


def assert_envelope(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """The standard error envelope with the expected status and code (the agent's, not a proxy's)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert {"message", "details", "timestamp", "path", "request_id"} <= body.keys()
    return body
