"""Claims on rows (workflows, judgements, outbox calls): a holder and an expiry on the database clock.

Why claims and not only `SELECT ... FOR UPDATE SKIP LOCKED`: a row lock lives as long as a
transaction, and a workflow is moved by seconds of scrapes and actuator calls that no transaction
should span. SKIP LOCKED still picks the rows to claim on PostgreSQL (`Dialect.skip_locked`):
without it two replicas' claiming UPDATEs locked the same due rows in different orders and
deadlocked. A claim is taken by one conditional UPDATE (free, already
ours, or expired), so of two replicas racing for a row exactly one gets it: SQLite runs writers
one at a time, and PostgreSQL re-checks the UPDATE's WHERE on the row a concurrent winner just
committed (https://www.postgresql.org/docs/15/transaction-iso.html#XACT-READ-COMMITTED). A
replica that dies keeps its claims only until they expire; a live one extends them while it works.
Expiry is judged on the database clock (`Dialect.epoch_now`), never on a replica's own. The SQL
is valid in SQLite (3.35+, for RETURNING) and PostgreSQL alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.storage.sql import SqlConnection

__all__ = ("ClaimColumns",)


class ClaimColumns:
    """The claim statements of one table with `claimed_by` and `claim_expires_at` columns, keyed by `key`."""

    def __init__(self, table: str, key: str) -> None:
        self._table = table
        self._key = key

    @staticmethod
    def _claimable(now: str) -> str:
        """The condition under which a holder (the one `?`) may take a row: free, its own, or expired."""
        return f"(claimed_by IS NULL OR claimed_by = ? OR claim_expires_at <= {now})"

    def claim_where(
        self,
        connection: SqlConnection,
        where: str,
        params: Sequence[object],
        holder: str,
        ttl_s: float,
        returning: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Claim every row matching `where` (its `?` bound to `params`) that `holder` may take.

        Returns the claimed rows' `returning` columns (default: the key), in no particular order.
        """
        now = connection.dialect.epoch_now
        sql = (
            f"UPDATE {self._table} SET claimed_by = ?, claim_expires_at = {now} + ? "  # noqa: S608 - constants
            f"WHERE {where} AND {self._claimable(now)} RETURNING {returning or self._key}"
        )
        return [tuple(row) for row in connection.execute(sql, (holder, ttl_s, *params, holder)).fetchall()]

    def claim_due(
        self,
        connection: SqlConnection,
        due: str,
        params: Sequence[object],
        *,
        limit: int,
        holder: str,
        ttl_s: float,
    ) -> list[str]:
        """Claim up to `limit` rows matching `due`, most overdue (`next_due_at`) first; their keys in that order."""
        chosen = (
            f"{self._key} IN (SELECT {self._key} FROM {self._table} WHERE {due} "  # noqa: S608 - constants
            f"AND {self._claimable(connection.dialect.epoch_now)} ORDER BY next_due_at LIMIT ?"
            f"{connection.dialect.skip_locked})"
        )
        returning = f"{self._key}, next_due_at"
        claimed = self.claim_where(connection, chosen, (*params, holder, limit), holder, ttl_s, returning)
        # RETURNING gives no order: put the due order back.
        return [str(key) for key, _ in sorted(claimed, key=lambda row: (float(row[1]), str(row[0])))]

    def extend(self, connection: SqlConnection, holder: str, ttl_s: float) -> int:
        """Push the expiry of every claim `holder` has to `ttl_s` from now (0: expire them now); how many."""
        now = connection.dialect.epoch_now
        cursor = connection.execute(
            f"UPDATE {self._table} SET claim_expires_at = {now} + ? WHERE claimed_by = ?",  # noqa: S608
            (ttl_s, holder),
        )
        return int(cursor.rowcount)

    def release(self, connection: SqlConnection, column: str, values: Sequence[str], holder: str) -> None:
        """Give up `holder`'s claims on the rows whose `column` is one of `values`."""
        if not values:
            return
        placeholders = ",".join("?" * len(values))
        connection.execute(
            f"UPDATE {self._table} SET claimed_by = NULL, claim_expires_at = NULL "  # noqa: S608 - constants
            f"WHERE claimed_by = ? AND {column} IN ({placeholders})",
            (holder, *values),
        )

    def forget_all(self, connection: SqlConnection) -> None:
        """Drop every claim (a database this process owns alone: any claim is a dead process's)."""
        connection.execute(
            f"UPDATE {self._table} SET claimed_by = NULL, claim_expires_at = NULL "  # noqa: S608 - constants
            "WHERE claimed_by IS NOT NULL"
        )
