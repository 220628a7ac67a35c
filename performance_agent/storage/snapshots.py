"""Snapshot history: each scrape's snapshot as encoded JSON, plus the cumulative series behind it.

Why bytes: `GET /history` joins stored JSON documents into an array without decoding and
re-encoding them, which keeps 10,000 stored snapshots cheap to serve. The cumulative series
(`RawScrape`, bucket edges include +Inf) are stored as MessagePack, which keeps infinities that
JSON cannot; analysis decodes them to compute windows and cohorts as PromQL would.

Adding a snapshot also marks its instance up, in one transaction, and stores nothing when the
instance was deleted meanwhile (so no orphaned history survives a DELETE racing a scrape).
Both classes implement `metrics.ports.SnapshotRepository`.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from performance_agent.metrics.builder import decode_raw_scrape
from performance_agent.metrics.ports import StampedHistory
from performance_agent.storage.instances import MemoryStore, StoredSnapshotRow

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from performance_agent.metrics.builder import RawScrape
    from performance_agent.storage.sql import SqlConnection, SqlDatabase

__all__ = ("MemorySnapshotRepository", "SqlSnapshotRepository")

_PRUNE_BATCH = 5000
_SIZE_BATCH = 1000
# Snapshots at or after a stamp and, unless the bound is NULL, after the newest one a reader holds.
_NEWER = (
    "FROM snapshots WHERE instance_id = ? AND collected_at >= ? "
    "AND (CAST(? AS DOUBLE PRECISION) IS NULL OR collected_at > ?) ORDER BY collected_at"
)
_NEWER_SNAPSHOTS = f"SELECT collected_at, snapshot {_NEWER}"
_NEWER_RAWS = f"SELECT collected_at, raw {_NEWER}"


class SqlSnapshotRepository:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def add(self, instance_id: str, collected_at: datetime, snapshot_json: bytes, raw: bytes) -> bool:
        stamp = collected_at.timestamp()

        def work(connection: SqlConnection) -> bool:
            with connection.transaction():
                marked = connection.execute(
                    "UPDATE instances SET status = 'up', last_seen = ?, last_scrape_at = ?, last_error = NULL, "
                    "consecutive_failures = 0 WHERE instance_id = ?",
                    (stamp, stamp, instance_id),
                ).rowcount
                if marked:
                    connection.execute(
                        "INSERT INTO snapshots (instance_id, collected_at, snapshot, raw) VALUES (?, ?, ?, ?)",
                        (instance_id, stamp, snapshot_json, raw),
                    )
            return marked > 0

        return await self._db.run(work)

    async def latest_raw(self, instance_id: str) -> RawScrape | None:
        def work(connection: SqlConnection) -> bytes | None:
            row = connection.execute(
                "SELECT raw FROM snapshots WHERE instance_id = ? ORDER BY collected_at DESC LIMIT 1", (instance_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        data = await self._db.run(work)
        return None if data is None else decode_raw_scrape(data)

    async def history_json(self, instance_id: str, since: datetime, limit: int) -> list[bytes]:
        stamp = since.timestamp()

        def work(connection: SqlConnection) -> list[bytes]:
            rows = connection.execute(
                "SELECT snapshot FROM snapshots WHERE instance_id = ? AND collected_at >= ? "
                "ORDER BY collected_at DESC LIMIT ?",
                (instance_id, stamp, limit),
            ).fetchall()
            return [row[0] for row in rows]

        return await self._db.run(work)

    async def raw_between(self, instance_id: str, since: datetime, until: datetime) -> list[RawScrape]:
        def work(connection: SqlConnection) -> list[bytes]:
            rows = connection.execute(
                "SELECT raw FROM snapshots WHERE instance_id = ? AND collected_at BETWEEN ? AND ? "
                "ORDER BY collected_at",
                (instance_id, since.timestamp(), until.timestamp()),
            ).fetchall()
            return [row[0] for row in rows]

        return [decode_raw_scrape(data) for data in await self._db.run(work)]

    async def history_after(self, instance_id: str, since: datetime, known_until: float | None) -> StampedHistory:
        return await self._stamped(_NEWER_SNAPSHOTS, instance_id, since, known_until)

    async def raw_after(self, instance_id: str, since: datetime, known_until: float | None) -> StampedHistory:
        return await self._stamped(_NEWER_RAWS, instance_id, since, known_until)

    async def _stamped(
        self, query: str, instance_id: str, since: datetime, known_until: float | None
    ) -> StampedHistory:
        stamp = since.timestamp()

        def work(connection: SqlConnection) -> StampedHistory:
            known = 0
            if known_until is not None:
                row = connection.execute(
                    "SELECT COUNT(*) FROM snapshots WHERE instance_id = ? AND collected_at BETWEEN ? AND ?",
                    (instance_id, stamp, known_until),
                ).fetchone()
                known = int(row[0])
            rows = connection.execute(query, (instance_id, stamp, known_until, known_until)).fetchall()
            return StampedHistory(known, [(float(row[0]), bytes(row[1])) for row in rows])

        return await self._db.run(work)

    async def count(self, instance_id: str) -> int:
        def work(connection: SqlConnection) -> int:
            row = connection.execute("SELECT COUNT(*) FROM snapshots WHERE instance_id = ?", (instance_id,)).fetchone()
            return int(row[0])

        return await self._db.run(work)

    async def prune(self, older_than: datetime) -> int:
        """In batches, so one big backlog never holds the write lock for long."""
        stamp = older_than.timestamp()

        def batch(connection: SqlConnection) -> int:
            return connection.execute(
                "DELETE FROM snapshots WHERE id IN (SELECT id FROM snapshots WHERE collected_at < ? LIMIT ?)",
                (stamp, _PRUNE_BATCH),
            ).rowcount

        removed = 0
        while True:
            deleted = await self._db.run(batch)
            removed += deleted
            if deleted < _PRUNE_BATCH:
                return removed

    async def prune_to_size(self, max_bytes: int) -> int:
        """Oldest first, in batches of at most `_SIZE_BATCH` rows, each instance's latest row kept."""

        def stored_bytes(connection: SqlConnection) -> int:
            row = connection.execute("SELECT COALESCE(SUM(length(snapshot) + length(raw)), 0) FROM snapshots")
            return int(row.fetchone()[0])

        def batch(excess: int) -> Callable[[SqlConnection], tuple[int, int]]:
            def work(connection: SqlConnection) -> tuple[int, int]:
                rows = connection.execute(
                    "SELECT id, length(snapshot) + length(raw) FROM snapshots "
                    "WHERE id NOT IN (SELECT MAX(id) FROM snapshots GROUP BY instance_id) "
                    "ORDER BY collected_at, id LIMIT ?",
                    (_SIZE_BATCH,),
                ).fetchall()
                chosen: list[int] = []
                freed = 0
                for row_id, size in rows:
                    if freed >= excess:
                        break
                    chosen.append(int(row_id))
                    freed += int(size)
                with connection.transaction():
                    connection.executemany("DELETE FROM snapshots WHERE id = ?", [(row_id,) for row_id in chosen])
                return len(chosen), freed

            return work

        excess = await self._db.run(stored_bytes) - max_bytes
        removed = 0
        while excess > 0:
            deleted, freed = await self._db.run(batch(excess))
            if deleted == 0:
                break  # only latest snapshots are left
            removed += deleted
            excess -= freed
        return removed


class MemorySnapshotRepository:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def add(self, instance_id: str, collected_at: datetime, snapshot_json: bytes, raw: bytes) -> bool:
        instance = self._store.instances.get(instance_id)
        if instance is None:
            return False
        rows = self._store.snapshots.setdefault(instance_id, [])
        stamp = collected_at.timestamp()
        bisect.insort(rows, StoredSnapshotRow(stamp, snapshot_json, raw), key=lambda row: row.collected_at)
        instance.state.status = "up"
        instance.state.last_seen = collected_at
        instance.state.last_scrape_at = collected_at
        instance.state.last_error = None
        instance.state.consecutive_failures = 0
        return True

    async def latest_raw(self, instance_id: str) -> RawScrape | None:
        rows = self._store.snapshots.get(instance_id)
        return decode_raw_scrape(rows[-1].raw) if rows else None

    async def history_json(self, instance_id: str, since: datetime, limit: int) -> list[bytes]:
        stamp = since.timestamp()
        rows = self._store.snapshots.get(instance_id, [])
        newest_first = [row.snapshot for row in reversed(rows) if row.collected_at >= stamp]
        return newest_first[:limit]

    async def raw_between(self, instance_id: str, since: datetime, until: datetime) -> list[RawScrape]:
        low, high = since.timestamp(), until.timestamp()
        rows = self._store.snapshots.get(instance_id, [])
        return [decode_raw_scrape(row.raw) for row in rows if low <= row.collected_at <= high]

    async def history_after(self, instance_id: str, since: datetime, known_until: float | None) -> StampedHistory:
        return self._stamped(instance_id, since, known_until, raw=False)

    async def raw_after(self, instance_id: str, since: datetime, known_until: float | None) -> StampedHistory:
        return self._stamped(instance_id, since, known_until, raw=True)

    def _stamped(self, instance_id: str, since: datetime, known_until: float | None, *, raw: bool) -> StampedHistory:
        stamp = since.timestamp()
        rows = [row for row in self._store.snapshots.get(instance_id, []) if row.collected_at >= stamp]
        newer = [
            (row.collected_at, row.raw if raw else row.snapshot)
            for row in rows
            if known_until is None or row.collected_at > known_until
        ]
        return StampedHistory(0 if known_until is None else len(rows) - len(newer), newer)

    async def count(self, instance_id: str) -> int:
        return len(self._store.snapshots.get(instance_id, []))

    async def prune(self, older_than: datetime) -> int:
        stamp = older_than.timestamp()
        removed = 0
        for instance_id, rows in self._store.snapshots.items():
            kept = [row for row in rows if row.collected_at >= stamp]
            removed += len(rows) - len(kept)
            self._store.snapshots[instance_id] = kept
        return removed

    async def prune_to_size(self, max_bytes: int) -> int:
        rows = [
            (row.collected_at, instance_id, row) for instance_id, kept in self._store.snapshots.items() for row in kept
        ]
        excess = sum(len(row.snapshot) + len(row.raw) for _, _, row in rows) - max_bytes
        latest = {id(kept[-1]) for kept in self._store.snapshots.values() if kept}
        removed = 0
        for _, instance_id, row in sorted(rows, key=lambda item: item[0]):
            if excess <= 0:
                break
            if id(row) in latest:
                continue
            self._store.snapshots[instance_id].remove(row)
            excess -= len(row.snapshot) + len(row.raw)
            removed += 1
        return removed
