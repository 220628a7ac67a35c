"""`open_storage`: the one place that chooses a storage backend and builds its repositories.

Why a factory: the composition root asks for "the agent's storage" and receives repositories
typed by the protocols their domains declare (`fleet.ports`, `metrics.ports`,
`optimization.ports`, `analysis.ports`, `workflows.ports`, `judgements.ports`), so adding a
backend (PostgreSQL for several agent replicas) is one more branch here, and nothing that uses a
repository changes. Nothing outside storage/ builds a repository or a database: this is the way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from performance_agent.storage.alerts import SqliteAlertRepository
from performance_agent.storage.database import Database
from performance_agent.storage.instances import SqliteInstanceRepository
from performance_agent.storage.judgements import SqliteJudgementRepository
from performance_agent.storage.plans import SqlitePlanRepository
from performance_agent.storage.snapshots import SqliteSnapshotRepository
from performance_agent.storage.workflows import SqliteWorkflowRepository

if TYPE_CHECKING:
    from performance_agent.analysis.ports import AlertRepository
    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.judgements.ports import JudgementRepository
    from performance_agent.metrics.ports import SnapshotRepository
    from performance_agent.optimization.ports import PlanRepository
    from performance_agent.workflows.ports import WorkflowRepository

__all__ = ("Storage", "open_storage")


@dataclass(frozen=True, slots=True)
class Storage:
    """The repositories of one agent over one database; `open`/`close` run in the app's lifespan."""

    database: Database
    instances: InstanceRepository
    snapshots: SnapshotRepository
    plans: PlanRepository
    alerts: AlertRepository
    workflows: WorkflowRepository
    judgements: JudgementRepository

    def ensure_unlocked(self) -> None:
        """Fail fast, before a server starts, when another agent owns the database (see `Database`)."""
        self.database.ensure_unlocked()

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
    )
