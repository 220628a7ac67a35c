"""Stored optimization plans: written once by `POST /optimize`, read by id (the API and rollout workflows).

A plan is immutable after it is stored, so the repository has no update: a new analysis makes
a new plan with a new id, and a workflow started from an old plan keeps seeing what it was
approved from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.storage.records import PLAN

if TYPE_CHECKING:
    from performance_agent.optimization.schemas import OptimizationPlan
    from performance_agent.storage.sql import SqlConnection, SqlDatabase


__all__ = ("MemoryPlanRepository", "SqlPlanRepository")


class SqlPlanRepository:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def add(self, plan: OptimizationPlan) -> None:
        document = PLAN.encode(plan)

        def work(connection: SqlConnection) -> None:
            connection.execute(
                "INSERT INTO plans (plan_id, instance_id, created_at, doc) VALUES (?, ?, ?, ?)",
                (plan.plan_id, plan.instance_id, plan.created_at.timestamp(), document),
            )

        await self._db.run(work)

    async def get(self, plan_id: str) -> OptimizationPlan | None:
        def work(connection: SqlConnection) -> bytes | None:
            row = connection.execute("SELECT doc FROM plans WHERE plan_id = ?", (plan_id,)).fetchone()
            return None if row is None else bytes(row[0])

        document = await self._db.run(work)
        return None if document is None else PLAN.decode(document)


class MemoryPlanRepository:
    """Keeps encoded documents, so a caller mutating what it got never changes the stored plan."""

    def __init__(self) -> None:
        self._plans: dict[str, bytes] = {}

    async def add(self, plan: OptimizationPlan) -> None:
        self._plans[plan.plan_id] = PLAN.encode(plan)

    async def get(self, plan_id: str) -> OptimizationPlan | None:
        document = self._plans.get(plan_id)
        return None if document is None else PLAN.decode(document)
