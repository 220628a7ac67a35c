"""Named leases (the leader of the background loops) judged on the database's clock.

Why one conditional UPSERT: taking a free or expired lease and renewing one's own are the same
statement (`... DO UPDATE ... WHERE holder = me OR expires_at < now`), so two replicas racing for
an expired lease cannot both win: the database applies the two statements one after the other
and the second sees the first one's fresh expiry. Why the database's clock: every replica compares
the stored expiry with the same "now" (`Dialect.epoch_now`), so a replica whose own clock is off
neither steals a live lease nor keeps a dead one. The SQL is valid in SQLite (3.24+) and
PostgreSQL alike (`INSERT ... ON CONFLICT ... DO UPDATE ... WHERE`, `EXCLUDED`). Implements
`replicas.ports.LeaseRepository`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.replicas.ports import LeaseRecord

if TYPE_CHECKING:
    from performance_agent.storage.sql import SqlConnection, SqlDatabase

__all__ = ("SqlLeaseRepository",)


class SqlLeaseRepository:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    @staticmethod
    def _acquire_sql(now: str) -> str:
        # The database clock is read once, in a subquery, so the row written and the expiry compared agree.
        # SQLite needs a WHERE between an INSERT's SELECT and ON CONFLICT (https://sqlite.org/lang_upsert.html).
        return (
            "INSERT INTO leases (name, holder, acquired_at, renewed_at, expires_at) "  # noqa: S608 - `now` is constant
            f"SELECT ?, ?, t.clock_now, t.clock_now, t.clock_now + ? FROM (SELECT {now} AS clock_now) AS t "
            "WHERE true "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at "
            "ELSE excluded.acquired_at END, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.renewed_at"
        )

    async def acquire(self, name: str, holder: str, ttl_s: float) -> LeaseRecord:
        """Take the lease if free or expired, or renew it if `holder` has it; returns the lease as it now stands.

        The caller holds the lease iff the returned record's holder is `holder`.
        """

        def work(connection: SqlConnection) -> LeaseRecord:
            with connection.transaction():
                connection.execute(self._acquire_sql(connection.dialect.epoch_now), (name, holder, ttl_s))
                record = self._read(connection, name)
            assert record is not None  # inserted or already there, in this transaction
            return record

        return await self._db.run(work)

    async def read(self, name: str) -> LeaseRecord | None:
        return await self._db.run(lambda connection: self._read(connection, name))

    async def release(self, name: str, holder: str) -> bool:
        """Give the lease up (a clean shutdown), so another replica takes it at once instead of after expiry."""

        def work(connection: SqlConnection) -> bool:
            cursor = connection.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
            return cursor.rowcount == 1

        return await self._db.run(work)

    async def forget_all(self) -> None:
        """Drop every lease: only on a database this process owns alone (`SqlDatabase.exclusive`): all are stale."""
        await self._db.run(lambda connection: connection.execute("DELETE FROM leases"))

    def _read(self, connection: SqlConnection, name: str) -> LeaseRecord | None:
        now = connection.dialect.epoch_now
        row = connection.execute(
            f"SELECT name, holder, acquired_at, expires_at, {now} FROM leases WHERE name = ?",  # noqa: S608 - constant
            (name,),
        ).fetchone()
        if row is None:
            return None
        return LeaseRecord(
            name=str(row[0]),
            holder=str(row[1]),
            acquired_at=float(row[2]),
            expires_at=float(row[3]),
            now=float(row[4]),
        )
