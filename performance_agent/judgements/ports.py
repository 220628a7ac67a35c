"""The judgement store's port: one document per judgement, rewritten whole under an optimistic version.

A judgement is read and written whole by its background loop and by `DELETE`. Two writers
racing (the loop judging a window while a client deletes the judgement) are told apart by the
version: exactly one wins, the other gets `JudgementVersionConflict` and re-reads. storage/
implements the protocol per backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

from performance_agent.judgements.state import JudgementDoc

if TYPE_CHECKING:
    from collections.abc import Sequence

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

    async def claim_due(self, now: float, limit: int, *, holder: str, ttl_s: float) -> list[str]:
        """Claim for `holder` the running judgements due by `now` that no other replica holds, most overdue first."""
        ...

    async def release_claims(self, judgement_ids: Sequence[str], holder: str) -> None: ...

    async def extend_claims(self, holder: str, ttl_s: float) -> int:
        """Keep every judgement claim of `holder` for `ttl_s` from now (0: expire now); how many."""
        ...

    async def forget_claims(self) -> None:
        """Drop every claim: only on a database this process owns alone."""
        ...

    async def save(self, doc: JudgementDoc, expected_version: int) -> int:
        """Write the document if still at `expected_version`; returns the new version.

        Raises `JudgementVersionConflict` (nothing written) when another writer won.
        """
        ...
