"""Alert history: one row per firing episode of one burn-rate alert, from `started_at` to `ended_at`.

The evaluator appends an episode when an alert fires and closes it when it resolves; nothing
else changes an episode, so the history doubles as an audit of when each objective burnt its
budget. An episode is identified by the alert's fingerprint and its start. Both classes
implement `analysis.ports.AlertRepository`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.storage.records import ALERT

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.analysis.ports import AlertStateName
    from performance_agent.analysis.schemas import AlertEvent, AlertState
    from performance_agent.storage.sql import SqlConnection, SqlDatabase

__all__ = ("MemoryAlertRepository", "SqlAlertRepository")


class SqlAlertRepository:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def record(self, events: Sequence[AlertEvent]) -> None:
        if not events:
            return
        rows = [
            (
                event.kind,
                event.alert.fingerprint,
                event.alert.started_at.timestamp(),
                event.alert.instance_id,
                event.alert.state,
                None if event.alert.ended_at is None else event.alert.ended_at.timestamp(),
                ALERT.encode(event.alert),
            )
            for event in events
        ]

        def work(connection: SqlConnection) -> None:
            with connection.transaction():
                for kind, fingerprint, started, instance_id, state, ended, document in rows:
                    if kind == "fire":
                        connection.execute(
                            "INSERT INTO alerts (fingerprint, started_at, instance_id, state, ended_at, doc) "
                            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint, started_at) DO UPDATE SET "
                            "instance_id = excluded.instance_id, state = excluded.state, "
                            "ended_at = excluded.ended_at, doc = excluded.doc",
                            (fingerprint, started, instance_id, state, ended, document),
                        )
                    else:
                        connection.execute(
                            "UPDATE alerts SET state = ?, ended_at = ?, doc = ? "
                            "WHERE fingerprint = ? AND started_at = ?",
                            (state, ended, document, fingerprint, started),
                        )

        await self._db.run(work)

    async def firing(self, instance_id: str | None = None) -> list[AlertState]:
        def work(connection: SqlConnection) -> list[bytes]:
            rows = connection.execute(
                "SELECT doc FROM alerts WHERE state = 'firing' AND (CAST(? AS TEXT) IS NULL OR instance_id = ?) "
                "ORDER BY started_at",
                (instance_id, instance_id),
            ).fetchall()
            return [bytes(row[0]) for row in rows]

        return [ALERT.decode(document) for document in await self._db.run(work)]

    async def list(
        self, *, state: AlertStateName | None = None, instance_id: str | None = None, limit: int = 100
    ) -> list[AlertState]:
        def work(connection: SqlConnection) -> list[bytes]:
            rows = connection.execute(
                "SELECT doc FROM alerts WHERE (CAST(? AS TEXT) IS NULL OR state = ?) "
                "AND (CAST(? AS TEXT) IS NULL OR instance_id = ?) ORDER BY started_at DESC, fingerprint LIMIT ?",
                (state, state, instance_id, instance_id, limit),
            ).fetchall()
            return [bytes(row[0]) for row in rows]

        return [ALERT.decode(document) for document in await self._db.run(work)]


class MemoryAlertRepository:
    def __init__(self) -> None:
        self._episodes: dict[tuple[str, float], bytes] = {}

    async def record(self, events: Sequence[AlertEvent]) -> None:
        for event in events:
            key = (event.alert.fingerprint, event.alert.started_at.timestamp())
            if event.kind == "fire" or key in self._episodes:
                self._episodes[key] = ALERT.encode(event.alert)

    def _all(self) -> list[AlertState]:
        return [ALERT.decode(document) for document in self._episodes.values()]

    async def firing(self, instance_id: str | None = None) -> list[AlertState]:
        found = [a for a in self._all() if a.state == "firing" and instance_id in (None, a.instance_id)]
        return sorted(found, key=lambda a: a.started_at)

    async def list(
        self, *, state: AlertStateName | None = None, instance_id: str | None = None, limit: int = 100
    ) -> list[AlertState]:
        found = [a for a in self._all() if state in (None, a.state) and instance_id in (None, a.instance_id)]
        found.sort(key=lambda a: (-a.started_at.timestamp(), a.fingerprint))
        return found[:limit]
