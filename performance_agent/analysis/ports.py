"""The alert history's port: one episode per firing of one burn-rate alert, `started_at` to `ended_at`.

The evaluator appends an episode when an alert fires and closes it when it resolves; nothing
else changes an episode, so the history doubles as an audit of when each objective burnt its
budget. storage/ implements it per backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.analysis.schemas import AlertEvent, AlertState

__all__ = ("AlertRepository", "AlertStateName")

AlertStateName = Literal["firing", "resolved"]


class AlertRepository(Protocol):
    async def record(self, events: Sequence[AlertEvent]) -> None:
        """Open an episode for each `fire`, close the matching one for each `resolve`."""
        ...

    async def firing(self, instance_id: str | None = None) -> list[AlertState]:
        """Episodes still open (of one instance, or all), oldest first."""
        ...

    async def list(
        self, *, state: AlertStateName | None = None, instance_id: str | None = None, limit: int = 100
    ) -> list[AlertState]:
        """Episodes newest first, optionally of one state and one instance, at most `limit`."""
        ...
