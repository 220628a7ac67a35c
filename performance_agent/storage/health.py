"""The storage health probe: one write and read back, the answer of a passing one reused briefly.

Why reused: the health endpoints are open to anyone, and writing to the database on every call
let any client turn probes into a write load. One probe per app (built by the composition root),
so two apps in one process never share an answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from performance_agent.clock import utc_now

if TYPE_CHECKING:
    from performance_agent.storage.sql import SqlConnection, SqlDatabase


__all__ = ("PROBE_CACHE_S", "StorageCheck", "StorageProbe")

#: How long a passing probe's answer is reused.
PROBE_CACHE_S = 1.0


@dataclass(frozen=True, slots=True)
class StorageCheck:
    """One probe's outcome: `ok`, the round trip's latency (None when it raised) and what happened."""

    ok: bool
    latency_s: float | None
    detail: str


def _write_and_read(connection: SqlConnection) -> str:
    stamp = utc_now().isoformat()
    connection.execute(
        "INSERT INTO health_probe (id, written_at) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
        (stamp,),
    )
    row = connection.execute("SELECT written_at FROM health_probe WHERE id = 1").fetchone()
    return str(row[0]) if row and row[0] == stamp else ""


class StorageProbe:
    """The write/read probe of one database, at most once per `cache_s` while it passes."""

    def __init__(self, database: SqlDatabase, cache_s: float = PROBE_CACHE_S) -> None:
        self._database = database
        self._cache_s = cache_s
        self._last: tuple[float, StorageCheck] | None = None

    async def check(self) -> StorageCheck:
        """A write and read back, or the last passing answer if younger than `cache_s`; a failure is never reused."""
        last = self._last
        if last is not None and time.monotonic() - last[0] < self._cache_s:
            return last[1]
        result = await self._probe()
        self._last = (time.monotonic(), result) if result.ok else None
        return result

    async def _probe(self) -> StorageCheck:
        started = time.perf_counter()
        try:
            echoed = await self._database.run(_write_and_read)
        except Exception as exc:
            return StorageCheck(ok=False, latency_s=None, detail=f"write/read failed: {exc}")
        latency = round(time.perf_counter() - started, 6)
        if not echoed:
            return StorageCheck(ok=False, latency_s=latency, detail="read back a different value")
        return StorageCheck(ok=True, latency_s=latency, detail="write/read ok")
