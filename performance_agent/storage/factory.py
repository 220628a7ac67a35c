"""`open_storage`: the one place that chooses a storage backend and builds its repositories.

Why a factory: the composition root asks for "the agent's storage" and receives repositories
typed by the protocols their domains declare (`fleet.ports`, `metrics.ports`,
`optimization.ports`, `analysis.ports`, `workflows.ports`, `judgements.ports`), so adding a
backend is one more branch here, and nothing that uses a repository changes. Two backends: an
embedded SQLite file (one replica) and PostgreSQL (any number of replicas), chosen by the URL's
scheme. Nothing outside storage/ builds a database or a repository: this module is the way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from performance_agent.storage.alerts import SqlAlertRepository
from performance_agent.storage.database import SqliteDatabase, StorageError
from performance_agent.storage.instances import SqlInstanceRepository
from performance_agent.storage.judgements import SqlJudgementRepository
from performance_agent.storage.leases import SqlLeaseRepository
from performance_agent.storage.plans import SqlPlanRepository
from performance_agent.storage.postgres import PostgresDatabase
from performance_agent.storage.snapshots import SqlSnapshotRepository
from performance_agent.storage.sql import SqlDatabase  # noqa: TC001 - a dataclass field type
from performance_agent.storage.workflows import SqlWorkflowRepository

if TYPE_CHECKING:
    from performance_agent.analysis.ports import AlertRepository
    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.judgements.ports import JudgementRepository
    from performance_agent.metrics.ports import SnapshotRepository
    from performance_agent.optimization.ports import PlanRepository
    from performance_agent.replicas.ports import LeaseRepository
    from performance_agent.workflows.ports import WorkflowRepository

__all__ = ("Storage", "open_database", "open_storage", "sqlite_path")


@dataclass(frozen=True, slots=True)
class Storage:
    """The repositories of one agent over one database; `open`/`close` run in the app's lifespan."""

    database: SqlDatabase
    instances: InstanceRepository
    snapshots: SnapshotRepository
    plans: PlanRepository
    alerts: AlertRepository
    workflows: WorkflowRepository
    judgements: JudgementRepository
    leases: LeaseRepository

    async def open(self) -> None:
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///relative`, `sqlite:////absolute` or `sqlite:///:memory:` URL; None for other schemes.

    A bare path (no scheme) is a SQLite file too: `PERF_AGENT_DATABASE` has always been one.
    """
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    if "://" not in url:
        return url
    return None


def open_database(url: str) -> SqliteDatabase | PostgresDatabase:
    """The backend a URL names, not opened yet (the CLI's `migrate` and `open_storage` share it)."""
    path = sqlite_path(url)
    if path is not None:
        if not path:
            raise StorageError("PERF_AGENT_DATABASE_URL: a sqlite URL needs a path, e.g. sqlite:///var/agent.db")
        return SqliteDatabase(path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    scheme = url.split("://", 1)[0]
    raise StorageError(
        f"PERF_AGENT_DATABASE_URL: unsupported scheme {scheme!r}; use sqlite:///path or postgresql://host/database"
    )


def open_storage(url: str) -> Storage:
    """Repositories over the database `url` names (see `open_database`).

    Nothing is opened yet: the database is opened by `Storage.open` inside the event loop.
    """
    database = open_database(url)
    return Storage(
        database=database,
        instances=SqlInstanceRepository(database),
        snapshots=SqlSnapshotRepository(database),
        plans=SqlPlanRepository(database),
        alerts=SqlAlertRepository(database),
        workflows=SqlWorkflowRepository(database),
        judgements=SqlJudgementRepository(database),
        leases=SqlLeaseRepository(database),
    )
