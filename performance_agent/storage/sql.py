"""What every storage backend gives a repository: a DB-API connection, a transaction and a dialect.

Why one shape for SQLite and PostgreSQL: each repository is written once, as plain synchronous
DB-API code that runs a whole unit of work (often one transaction) in one call on a database
thread, and both backends run it unchanged. The SQL is the common subset of SQLite 3.35+ and
PostgreSQL 13+ (`INSERT … ON CONFLICT`, `RETURNING`, partial indexes), written with `?`
placeholders; the PostgreSQL connection rewrites them to psycopg's `%s`. The few expressions the
two engines spell differently (reading a JSON field of a stored document, the database clock,
insertion order) come from the connection's `dialect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = ("Dialect", "DuplicateKeyError", "SqlConnection", "SqlCursor", "SqlDatabase", "migrate")

T = TypeVar("T")


class DuplicateKeyError(RuntimeError):
    """A write hit a unique constraint (raised by both backends in place of their driver's error)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL two engines spell differently; everything else is shared."""

    name: str
    #: SQL reading the text field `{field}` of the JSON document column `{column}`.
    json_text: str
    #: SQL of the database server's current time in seconds since the epoch (one clock for all replicas).
    epoch_now: str
    #: A column that orders a table's rows by insertion (SQLite's `rowid`, a sequence column elsewhere).
    insertion_order: str
    #: Appended to a subquery choosing rows to claim: PostgreSQL locks the rows it picks and skips
    #: rows another transaction holds (`FOR UPDATE SKIP LOCKED`), so two replicas claiming at once
    #: never wait on each other's rows in opposite orders (a deadlock); SQLite has one writer.
    skip_locked: str = ""

    def json_field(self, column: str, field: str) -> str:
        return self.json_text.format(column=column, field=field)


class SqlCursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class SqlConnection(Protocol):
    """One database connection, lent to a unit of work on a database thread."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, params: Sequence[object] = ()) -> SqlCursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    def transaction(self) -> contextlib.AbstractContextManager[SqlConnection]:
        """All or nothing: committed when the block ends, rolled back on any error."""
        ...


class SqlDatabase(Protocol):
    """A backend the repositories run their units of work on (opened in the app's lifespan)."""

    @property
    def description(self) -> str:
        """Where the data lives, safe to show (no password)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def run(self, work: Callable[[SqlConnection], T]) -> T:
        """Run `work` on a database thread with a connection of its own for the call."""
        ...

    @property
    def exclusive(self) -> bool:
        """Whether this process is provably alone on the database (stale leases and claims are cleared at start)."""
        ...

    @property
    def migrated(self) -> tuple[int, int]:
        """(schema version found, version now): `open` applies the missing migrations under the backend's lock."""
        ...


async def migrate(database: SqlDatabase) -> tuple[int, int]:
    """Open the database (which migrates it) and close it again: `python -m performance_agent migrate`."""
    await database.open()
    try:
        return database.migrated
    finally:
        await database.close()
