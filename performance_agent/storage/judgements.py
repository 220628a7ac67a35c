"""Judgement persistence: one document per judgement, rewritten whole under an optimistic version.

A judgement is read and written whole by its background loop and by `DELETE`, so (as for
workflows) one document column is enough; `status` and `next_due_at` sit beside it so the loop
finds the running, due judgements without decoding every document. Two writers racing (the loop
judging a window while a client deletes the judgement) are told apart by the version: exactly
one wins, the other gets `JudgementVersionConflict` and re-reads. Implements
`judgements.ports.JudgementRepository`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.judgements.ports import JudgementVersionConflict, StoredJudgement
from performance_agent.storage.claims import ClaimColumns
from performance_agent.storage.records import JUDGEMENT

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.judgements.state import JudgementDoc
    from performance_agent.storage.sql import SqlConnection, SqlDatabase


__all__ = ("SqlJudgementRepository",)


class SqlJudgementRepository:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._claims = ClaimColumns("judgements", "judgement_id")

    async def create(self, doc: JudgementDoc) -> StoredJudgement:
        document = JUDGEMENT.encode(doc)

        def work(connection: SqlConnection) -> None:
            connection.execute(
                "INSERT INTO judgements (judgement_id, status, version, next_due_at, created_at, doc) "
                "VALUES (?, ?, 1, ?, ?, ?)",
                (doc.judgement_id, doc.status, doc.next_due_at, doc.created_at, document),
            )

        await self._db.run(work)
        return StoredJudgement(doc=doc, version=1)

    async def get(self, judgement_id: str) -> StoredJudgement | None:
        def work(connection: SqlConnection) -> tuple[int, bytes] | None:
            row = connection.execute(
                "SELECT version, doc FROM judgements WHERE judgement_id = ?", (judgement_id,)
            ).fetchone()
            return None if row is None else (int(row[0]), bytes(row[1]))

        found = await self._db.run(work)
        return None if found is None else StoredJudgement(doc=JUDGEMENT.decode(found[1]), version=found[0])

    async def claim_due(self, now: float, limit: int, *, holder: str, ttl_s: float) -> list[str]:
        """Claim the running, due judgements no other replica holds (one statement); most overdue first."""

        def work(connection: SqlConnection) -> list[str]:
            with connection.transaction():
                due = "status = 'running' AND next_due_at <= ?"
                return self._claims.claim_due(connection, due, (now,), limit=limit, holder=holder, ttl_s=ttl_s)

        return await self._db.run(work)

    async def release_claims(self, judgement_ids: Sequence[str], holder: str) -> None:
        if not judgement_ids:
            return
        await self._db.run(lambda connection: self._claims.release(connection, "judgement_id", judgement_ids, holder))

    async def extend_claims(self, holder: str, ttl_s: float) -> int:
        return await self._db.run(lambda connection: self._claims.extend(connection, holder, ttl_s))

    async def forget_claims(self) -> None:
        await self._db.run(self._claims.forget_all)

    async def save(self, doc: JudgementDoc, expected_version: int) -> int:
        """Write the document if still at `expected_version`; returns the new version."""
        document = JUDGEMENT.encode(doc)

        def work(connection: SqlConnection) -> int:
            cursor = connection.execute(
                "UPDATE judgements SET status = ?, version = version + 1, next_due_at = ?, doc = ? "
                "WHERE judgement_id = ? AND version = ?",
                (doc.status, doc.next_due_at, document, doc.judgement_id, expected_version),
            )
            if cursor.rowcount != 1:
                raise JudgementVersionConflict(doc.judgement_id)
            return expected_version + 1

        return await self._db.run(work)
