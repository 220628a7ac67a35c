"""The instance registry: what callers registered, and what the collector last observed.

Two halves on purpose: the registered `spec` changes only through the API (POST/PUT), the
observed `state` only through scrapes, and neither write touches the other's columns, so a PUT
racing with a scrape cannot lose either. Deleting an instance deletes its history in the same
transaction. Both classes implement `fleet.ports.InstanceRepository`: `SqlInstanceRepository`
is the default; `MemoryInstanceRepository` serves unit tests and shares a `MemoryStore` with the
memory snapshot repository, as the SQLite pair shares one database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from performance_agent.clock import utc
from performance_agent.fleet.ports import InstanceExistsError, InstanceState, StoredInstance
from performance_agent.storage.records import INSTANCE_ERROR, INSTANCE_SPEC

if TYPE_CHECKING:
    from performance_agent.fleet.schemas import InstanceError, InstanceSpec
    from performance_agent.storage.sql import SqlConnection, SqlDatabase

__all__ = ("MemoryInstanceRepository", "MemoryStore", "SqlInstanceRepository", "StoredSnapshotRow")


# ---------------------------------------------------------------------------- SQLite

_SELECT = (
    "SELECT instance_id, record, created_at, updated_at, status, last_seen, last_scrape_at, last_error, "
    "consecutive_failures FROM instances"
)
_SELECT_ONE = _SELECT + " WHERE instance_id = ?"
_SELECT_FILTERED = _SELECT + (
    " WHERE (CAST(? AS TEXT) IS NULL OR engine = ?) AND (CAST(? AS TEXT) IS NULL OR status = ?) ORDER BY instance_id"
)
_INSERT = (
    "INSERT INTO instances (instance_id, engine, record, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (instance_id) DO NOTHING"
)
_UPDATE_SPEC = "UPDATE instances SET engine = ?, record = ?, updated_at = ? WHERE instance_id = ?"


def _time(value: float | None) -> datetime | None:
    return None if value is None else utc(value)


def _row_to_instance(row: tuple[Any, ...]) -> StoredInstance:
    instance_id, record, created, updated, status, last_seen, last_scrape, last_error, failures = row
    return StoredInstance(
        instance_id=instance_id,
        spec=INSTANCE_SPEC.decode(record),
        created_at=datetime.fromisoformat(created),
        updated_at=datetime.fromisoformat(updated),
        state=InstanceState(
            status=status,
            last_seen=_time(last_seen),
            last_scrape_at=_time(last_scrape),
            last_error=None if last_error is None else INSTANCE_ERROR.decode(last_error),
            consecutive_failures=failures,
        ),
    )


def _select_one(connection: SqlConnection, instance_id: str) -> StoredInstance | None:
    row = connection.execute(_SELECT_ONE, (instance_id,)).fetchone()
    return None if row is None else _row_to_instance(row)


class SqlInstanceRepository:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def get(self, instance_id: str) -> StoredInstance | None:
        return await self._db.run(lambda connection: _select_one(connection, instance_id))

    async def list(self, *, engine: str | None = None, status: str | None = None) -> list[StoredInstance]:
        def work(connection: SqlConnection) -> list[StoredInstance]:
            return [
                _row_to_instance(row) for row in connection.execute(_SELECT_FILTERED, (engine, engine, status, status))
            ]

        return await self._db.run(work)

    async def create(self, instance_id: str, spec: InstanceSpec, now: datetime) -> StoredInstance:
        def work(connection: SqlConnection) -> StoredInstance:
            stamp = now.isoformat()
            inserted = connection.execute(
                _INSERT,
                (instance_id, spec.engine, INSTANCE_SPEC.encode(spec), stamp, stamp),
            ).rowcount
            if not inserted:
                raise InstanceExistsError(instance_id)
            return StoredInstance(instance_id=instance_id, spec=spec, created_at=now, updated_at=now)

        return await self._db.run(work)

    async def replace(self, instance_id: str, spec: InstanceSpec, now: datetime) -> StoredInstance | None:
        def work(connection: SqlConnection) -> StoredInstance | None:
            with connection.transaction():
                cursor = connection.execute(
                    _UPDATE_SPEC,
                    (spec.engine, INSTANCE_SPEC.encode(spec), now.isoformat(), instance_id),
                )
                return _select_one(connection, instance_id) if cursor.rowcount else None

        return await self._db.run(work)

    async def upsert(self, instance_id: str, spec: InstanceSpec, now: datetime) -> tuple[StoredInstance, bool]:
        def work(connection: SqlConnection) -> tuple[StoredInstance, bool]:
            stamp = now.isoformat()
            with connection.transaction():
                cursor = connection.execute(
                    _UPDATE_SPEC,
                    (spec.engine, INSTANCE_SPEC.encode(spec), stamp, instance_id),
                )
                created = cursor.rowcount == 0
                if created:
                    connection.execute(
                        _INSERT,
                        (instance_id, spec.engine, INSTANCE_SPEC.encode(spec), stamp, stamp),
                    )
                stored = _select_one(connection, instance_id)
            assert stored is not None  # written in this very transaction
            return stored, created

        return await self._db.run(work)

    async def delete(self, instance_id: str) -> bool:
        def work(connection: SqlConnection) -> bool:
            with connection.transaction():
                connection.execute("DELETE FROM snapshots WHERE instance_id = ?", (instance_id,))
                return connection.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,)).rowcount > 0

        return await self._db.run(work)

    async def record_failure(self, instance_id: str, error: InstanceError) -> bool:
        def work(connection: SqlConnection) -> bool:
            cursor = connection.execute(
                "UPDATE instances SET status = 'down', last_scrape_at = ?, last_error = ?, "
                "consecutive_failures = consecutive_failures + 1 WHERE instance_id = ?",
                (error.at.timestamp(), INSTANCE_ERROR.encode(error), instance_id),
            )
            return cursor.rowcount > 0

        return await self._db.run(work)


# ---------------------------------------------------------------------------- memory


@dataclass(slots=True)
class StoredSnapshotRow:
    collected_at: float
    snapshot: bytes
    raw: bytes


@dataclass(slots=True)
class MemoryStore:
    """Both registries' data for the memory repositories (one per agent, like one database file)."""

    instances: dict[str, StoredInstance] = field(default_factory=dict)
    snapshots: dict[str, list[StoredSnapshotRow]] = field(default_factory=dict)


def _copy(instance: StoredInstance) -> StoredInstance:
    """Callers may mutate what they get; the store must not change with them."""
    return msgspec.structs.replace(instance, state=msgspec.structs.replace(instance.state))


class MemoryInstanceRepository:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def get(self, instance_id: str) -> StoredInstance | None:
        found = self._store.instances.get(instance_id)
        return None if found is None else _copy(found)

    async def list(self, *, engine: str | None = None, status: str | None = None) -> list[StoredInstance]:
        return [
            _copy(instance)
            for _, instance in sorted(self._store.instances.items())
            if (engine is None or instance.spec.engine == engine)
            and (status is None or instance.state.status == status)
        ]

    async def create(self, instance_id: str, spec: InstanceSpec, now: datetime) -> StoredInstance:
        if instance_id in self._store.instances:
            raise InstanceExistsError(instance_id)
        self._store.instances[instance_id] = StoredInstance(
            instance_id=instance_id, spec=spec, created_at=now, updated_at=now
        )
        return _copy(self._store.instances[instance_id])

    async def replace(self, instance_id: str, spec: InstanceSpec, now: datetime) -> StoredInstance | None:
        found = self._store.instances.get(instance_id)
        if found is None:
            return None
        found.spec = spec
        found.updated_at = now
        return _copy(found)

    async def upsert(self, instance_id: str, spec: InstanceSpec, now: datetime) -> tuple[StoredInstance, bool]:
        replaced = await self.replace(instance_id, spec, now)
        if replaced is not None:
            return replaced, False
        return await self.create(instance_id, spec, now), True

    async def delete(self, instance_id: str) -> bool:
        self._store.snapshots.pop(instance_id, None)
        return self._store.instances.pop(instance_id, None) is not None

    async def record_failure(self, instance_id: str, error: InstanceError) -> bool:
        found = self._store.instances.get(instance_id)
        if found is None:
            return False
        found.state.status = "down"
        found.state.last_scrape_at = error.at
        found.state.last_error = error
        found.state.consecutive_failures += 1
        return True
