"""The judgement store's port: one document per judgement, rewritten whole under an optimistic version.

A judgement is read and written whole by its background loop and by `DELETE`. Two writers
racing (the loop judging a window while a client deletes the judgement) are told apart by the
version: exactly one wins, the other gets `JudgementVersionConflict` and re-reads. storage/
implements the protocol per backend.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from performance_agent.judgements.state import JudgementDoc

__all__ = ("JudgementRepository", "JudgementVersionConflict", "StoredJudgement")


class JudgementVersionConflict(Exception):
    """The judgement changed since it was read; the caller re-reads and decides again."""

    def __init__(self, judgement_id: str) -> None:
        super().__init__(f"judgement {judgement_id} changed while it was being written")
        self.judgement_id = judgement_id


class StoredJudgement(msgspec.Struct, kw_only=True, frozen=True):
    doc: JudgementDoc
    version: int


class JudgementRepository(Protocol):
    async def create(self, doc: JudgementDoc) -> StoredJudgement:
        """Store a new judgement at version 1 (its id is new)."""
        ...

    async def get(self, judgement_id: str) -> StoredJudgement | None: ...

    async def due(self, now: float, limit: int) -> list[str]:
        """Running judgements whose next look has come, most overdue first."""
        ...

    async def save(self, doc: JudgementDoc, expected_version: int) -> int:
        """Write the document if still at `expected_version`; returns the new version.

        Raises `JudgementVersionConflict` (nothing written) when another writer won.
        """
        ...
