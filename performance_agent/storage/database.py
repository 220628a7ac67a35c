"""One SQLite database per agent, reached from asyncio through a single dedicated thread.

Why one thread: sqlite3 connections must stay on the thread that made them, and one writer
thread serialises writes without lock contention, while WAL mode lets that thread read
without blocking on its own writes. Why a lock: two agents on one file would run two
reconcilers and apply rollout stages twice, so the second one refuses to start. The `flock` is
taken on the database file itself, so it belongs to the file (device and inode), not to the
path text: a symlink, a hard link or another spelling of the path reach the same lock. (SQLite locks with
`fcntl` byte ranges, which Linux keeps apart from `flock`.) The kernel releases it when the
process dies, so `kill -9` never leaves a stale lock behind.
`:memory:` gives a private throwaway database (unit tests, demos) with the same code path.
Repositories receive a `SqliteConnection` (storage/sql.py's shape) so the same code runs on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from performance_agent.storage.sql import Dialect, DuplicateKeyError, SqlConnection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = ("MIGRATIONS", "SQLITE", "SqliteConnection", "SqliteDatabase", "StorageError", "StorageLockedError")

#: SQLite's spelling of what storage/sql.py's `Dialect` names.
SQLITE = Dialect(
    name="sqlite",
    json_text="json_extract(CAST({column} AS TEXT), '$.{field}')",
    epoch_now="((julianday('now') - 2440587.5) * 86400.0)",
    insertion_order="rowid",
)

T = TypeVar("T")

#: Schema steps, applied in order; `PRAGMA user_version` records how many ran. Append only.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE health_probe (id INTEGER PRIMARY KEY CHECK (id = 1), written_at TEXT NOT NULL);
    CREATE TABLE instances (
        instance_id TEXT PRIMARY KEY,
        engine TEXT NOT NULL,
        record BLOB NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY,
        instance_id TEXT NOT NULL,
        collected_at REAL NOT NULL,
        snapshot BLOB NOT NULL,
        raw BLOB NOT NULL
    );
    CREATE INDEX snapshots_by_instance_time ON snapshots (instance_id, collected_at DESC);
    CREATE INDEX snapshots_by_time ON snapshots (collected_at);
    """,
    # Observed scrape state of an instance, kept apart from its registered record so that the
    # collector's updates never rewrite (or race with) what a caller registered.
    """
    ALTER TABLE instances ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
    ALTER TABLE instances ADD COLUMN last_seen REAL;
    ALTER TABLE instances ADD COLUMN last_scrape_at REAL;
    ALTER TABLE instances ADD COLUMN last_error BLOB;
    ALTER TABLE instances ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
    """,
    # Rollout workflows: the document with its searchable columns, instance locks (one active
    # workflow per instance, enforced by a partial unique index), the append-only audit trail,
    # health windows, the actuator outbox and Idempotency-Key claims.
    """
    CREATE TABLE workflows (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow_id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        next_due_at REAL,
        created_at REAL NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX workflows_by_status ON workflows (status, seq);
    CREATE INDEX workflows_by_due ON workflows (next_due_at) WHERE next_due_at IS NOT NULL;
    CREATE TABLE workflow_instances (
        workflow_id TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        active INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, instance_id)
    );
    CREATE UNIQUE INDEX workflow_instances_one_active ON workflow_instances (instance_id) WHERE active = 1;
    CREATE INDEX workflow_instances_by_instance ON workflow_instances (instance_id);
    CREATE TABLE workflow_events (
        workflow_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        event BLOB NOT NULL,
        PRIMARY KEY (workflow_id, seq)
    );
    CREATE TABLE workflow_windows (
        workflow_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        window BLOB NOT NULL,
        PRIMARY KEY (workflow_id, seq)
    );
    CREATE TABLE workflow_outbox (
        event_id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        action TEXT NOT NULL,
        stage_index INTEGER NOT NULL,
        payload BLOB NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_error TEXT,
        delivered_at REAL,
        UNIQUE (workflow_id, action, stage_index)
    );
    CREATE TABLE workflow_idempotency (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    );
    """,
    # Optimization plans (immutable documents) and SLO burn-rate alert episodes.
    """
    CREATE TABLE plans (
        plan_id TEXT PRIMARY KEY,
        instance_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX plans_by_instance ON plans (instance_id, created_at);
    CREATE TABLE alerts (
        fingerprint TEXT NOT NULL,
        started_at REAL NOT NULL,
        instance_id TEXT NOT NULL,
        state TEXT NOT NULL,
        ended_at REAL,
        doc BLOB NOT NULL,
        PRIMARY KEY (fingerprint, started_at)
    );
    CREATE INDEX alerts_by_state ON alerts (state, started_at);
    CREATE INDEX alerts_by_instance ON alerts (instance_id, started_at);
    """,
    # Actuator attempts that may have reached the actuator (a refused connection or a host that
    # does not resolve certainly did not): an apply never sent has nothing to roll back.
    """
    ALTER TABLE workflow_outbox ADD COLUMN sent_attempts INTEGER NOT NULL DEFAULT 0;
    UPDATE workflow_outbox SET sent_attempts = attempts;
    """,
    # Canary judgements for outside rollout controllers (Argo Rollouts, Flagger): the document
    # with the columns the background loop searches by.
    """
    CREATE TABLE judgements (
        judgement_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        next_due_at REAL,
        created_at REAL NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX judgements_by_due ON judgements (next_due_at) WHERE status = 'running';
    """,
    # Several replicas on one database: the leader lease of the background loops, and claims
    # (holder + expiry on the database clock) so each workflow, judgement and outbox call is
    # moved by one replica at a time; a claim of a dead replica expires and is taken over.
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        renewed_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    ALTER TABLE workflows ADD COLUMN claimed_by TEXT;
    ALTER TABLE workflows ADD COLUMN claim_expires_at REAL;
    CREATE INDEX workflows_by_claim ON workflows (claimed_by) WHERE claimed_by IS NOT NULL;
    ALTER TABLE judgements ADD COLUMN claimed_by TEXT;
    ALTER TABLE judgements ADD COLUMN claim_expires_at REAL;
    CREATE INDEX judgements_by_claim ON judgements (claimed_by) WHERE claimed_by IS NOT NULL;
    ALTER TABLE workflow_outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE workflow_outbox ADD COLUMN claim_expires_at REAL;
    CREATE INDEX workflow_outbox_by_claim ON workflow_outbox (claimed_by) WHERE claimed_by IS NOT NULL;
    """,
]


def _flock_owner(device: int, inode: int) -> str | None:
    """The pid holding a `flock` on the file, from Linux's /proc/locks (None when not found)."""
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return fields[4]
    return None


class StorageError(RuntimeError):
    """The database cannot be opened or used."""


class StorageLockedError(StorageError):
    """Another agent process owns this database file."""


class SqliteConnection:
    """The database thread's sqlite3 connection in the shape every repository is written against."""

    __slots__ = ("_raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._raw.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise DuplicateKeyError(str(exc)) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            self._raw.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise DuplicateKeyError(str(exc)) from None

    def close(self) -> None:
        self._raw.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqlConnection]:
        """`BEGIN IMMEDIATE` … `COMMIT`, rolled back on any error: all or nothing, one writer at a time."""
        self._raw.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self._raw.execute("ROLLBACK")
            raise
        self._raw.execute("COMMIT")


class SqliteDatabase:
    def __init__(self, path: str) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._connection: SqliteConnection | None = None
        self._lock_file: int | None = None
        self._migrated = (0, 0)

    @property
    def description(self) -> str:
        return f"SQLite {self.path}"

    @property
    def exclusive(self) -> bool:
        """Always: the file lock (or a private `:memory:` database) proves this process is alone on it, so
        leases and claims found at start-up are a dead process's and are cleared (one replica, always leader)."""
        return True

    @property
    def is_memory(self) -> bool:
        return self.path == ":memory:"

    async def open(self) -> None:
        if not self.is_memory:
            self._acquire_lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except BaseException:
            await self.close()
            raise

    def ensure_unlocked(self) -> None:
        """Fail fast, before a server starts, when another agent owns the file (the CLI's one-line refusal).

        The lifespan takes the lock for real; this only spares the user a server start-up traceback.
        """
        if self.is_memory:
            return
        self._acquire_lock()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def _acquire_lock(self) -> None:
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(f"PERF_AGENT_DATABASE: cannot create {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            identity = os.fstat(fd)
            os.close(fd)
            owner = _flock_owner(identity.st_dev, identity.st_ino) or "unknown"
            raise StorageLockedError(
                f"PERF_AGENT_DATABASE: {path} is already used by another performance-agent process (pid {owner}); "
                f"the lock is on the file itself (device {identity.st_dev}, inode {identity.st_ino}), whatever "
                "path names it; only one agent may own a database file"
            ) from None
        self._lock_file = fd

    def _connect(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            connection.execute("PRAGMA busy_timeout = 5000")
            if not self.is_memory:
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StorageError(f"PERF_AGENT_DATABASE: {self.path} cannot use WAL journaling (got {mode})")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
            self._migrated = self._migrate(connection)
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise StorageError(f"PERF_AGENT_DATABASE: {self.path} is not a usable SQLite database: {exc}") from None
        except BaseException:
            connection.close()
            raise
        self._connection = SqliteConnection(connection)

    @property
    def migrated(self) -> tuple[int, int]:
        """(schema version found, version now) by the last `open`."""
        return self._migrated

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> tuple[int, int]:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StorageError(
                f"the database schema (version {version}) is newer than this agent knows ({len(MIGRATIONS)}); "
                "upgrade the agent instead of downgrading"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, script.split(";")):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return version, len(MIGRATIONS)

    async def run(self, work: Callable[[SqlConnection], T]) -> T:
        """Run `work` on the database thread; it gets the connection and may use transactions."""
        if self._executor is None:
            raise StorageError("the database is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[SqlConnection], T]) -> T:
        if self._connection is None:
            raise StorageError("the database is not open")
        return work(self._connection)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            connection = self._connection

            def _close() -> None:
                if connection is not None:
                    connection.close()

            await asyncio.get_running_loop().run_in_executor(executor, _close)
            executor.shutdown(wait=True)
            self._connection = None
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing the descriptor releases the flock
            self._lock_file = None
