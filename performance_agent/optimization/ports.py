"""The plan store's port: optimization plans are written once and read by id.

A plan is immutable after it is stored, so the port has no update: a new analysis makes a new
plan with a new id, and a workflow started from an old plan keeps seeing what it was approved
from. storage/ implements it per backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from performance_agent.optimization.schemas import OptimizationPlan

__all__ = ("PlanRepository",)


class PlanRepository(Protocol):
    async def add(self, plan: OptimizationPlan) -> None:
        """Store a new plan (its `plan_id` is new)."""
        ...

    async def get(self, plan_id: str) -> OptimizationPlan | None: ...
