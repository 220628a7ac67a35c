"""`open_storage`: the one place that chooses a storage backend and builds its repositories.

Why a factory: the composition root asks for "the agent's storage" and receives repositories
typed by their protocols, so adding a backend (PostgreSQL for several agent replicas) is one
more branch here, and nothing that uses a repository changes. SQLite is the only backend today.
"""

from __future__ import annotations

from dataclasses import dataclass

from performance_agent.storage.alerts import AlertRepository, SqliteAlertRepository
from performance_agent.storage.database import Database
from performance_agent.storage.instances import InstanceRepository, SqliteInstanceRepository
from performance_agent.storage.judgements import SqliteJudgementRepository
from performance_agent.storage.leases import SqliteLeaseRepository
from performance_agent.storage.plans import PlanRepository, SqlitePlanRepository
from performance_agent.storage.snapshots import SnapshotRepository, SqliteSnapshotRepository
from performance_agent.storage.workflows import SqliteWorkflowRepository

__all__ = ("Storage", "open_storage")


@dataclass(frozen=True, slots=True)
class Storage:
    """The repositories of one agent over one database; `open`/`close` run in the app's lifespan."""

    database: Database
    instances: InstanceRepository
    snapshots: SnapshotRepository
    plans: PlanRepository
    alerts: AlertRepository
    workflows: SqliteWorkflowRepository
    judgements: SqliteJudgementRepository
    leases: SqliteLeaseRepository

    async def open(self) -> None:
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()


def open_storage(location: str) -> Storage:
    """Repositories over `location` (`PERF_AGENT_DATABASE`: a SQLite file path or `:memory:`).

    Nothing is opened yet: the database is opened by `Storage.open` inside the event loop.
    """
    database = Database(location)
    return Storage(
        database=database,
        instances=SqliteInstanceRepository(database),
        snapshots=SqliteSnapshotRepository(database),
        plans=SqlitePlanRepository(database),
        alerts=SqliteAlertRepository(database),
        workflows=SqliteWorkflowRepository(database),
        judgements=SqliteJudgementRepository(database),
        leases=SqliteLeaseRepository(database),
    )
