"""Workflow persistence: the document, its audit trail, health windows and the actuator outbox.

Every change is one SQLite transaction: the document is rewritten only if its `version` is still
the one the caller read (optimistic concurrency: of two concurrent writers exactly one wins, the
other gets `VersionConflict`), and the audit events, window, outbox changes and instance locks
that go with it are written in the same transaction, so a crash never leaves a transition
without its event or an event without its transition.

A partial unique index allows each instance in at most one active workflow, so even a bug in
the service could not start two rollouts on one server. The outbox holds each actuator call
(with its stable `event_id`) before it is sent, which is how a restarted agent resends the same
call instead of inventing a new one. Implements `workflows.ports.WorkflowRepository`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.clock import utc
from performance_agent.storage.claims import ClaimColumns
from performance_agent.storage.records import WINDOW, WORKFLOW, WORKFLOW_EVENT
from performance_agent.workflows.machine import ACTIVE_STATUSES, is_active
from performance_agent.workflows.ports import (
    IdempotencyClaim,
    IdempotencyMismatch,
    InstanceBusy,
    OutboxRow,
    OutboxUpdate,
    StoredWorkflow,
    VersionConflict,
)
from performance_agent.workflows.schemas import WorkflowEvent
from performance_agent.workflows.state import EventDraft

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.storage.sql import SqlConnection, SqlDatabase
    from performance_agent.workflows.schemas import WindowRecord
    from performance_agent.workflows.state import WorkflowDoc

__all__ = ("SqlWorkflowRepository",)

_ACTIVE = tuple(sorted(status.value for status in ACTIVE_STATUSES))
_ACTIVE_SQL = "(" + ",".join("?" * len(_ACTIVE)) + ")"


@dataclass(slots=True)
class _Write:
    events: Sequence[EventDraft] = ()
    window: WindowRecord | None = None
    outbox: Sequence[OutboxUpdate] = field(default_factory=list)


def _row_to_stored(row: tuple[object, ...]) -> StoredWorkflow:
    seq, version, doc = row
    return StoredWorkflow(doc=WORKFLOW.decode(doc), version=int(version), seq=int(seq))  # type: ignore[arg-type,call-overload]


def _insert_events(connection: SqlConnection, workflow_id: str, events: Sequence[EventDraft]) -> None:
    if not events:
        return
    row = connection.execute("SELECT COALESCE(MAX(seq), 0) FROM workflow_events WHERE workflow_id = ?", (workflow_id,))
    seq = int(row.fetchone()[0])
    for draft in events:
        seq += 1
        event = WorkflowEvent(
            seq=seq,
            at=utc(draft.at),
            type=draft.type,
            action=draft.action,
            from_status=draft.from_status,
            to_status=draft.to_status,
            actor=draft.actor,
            comment=draft.comment,
            reason=draft.reason,
            stage_index=draft.stage_index,
            details=draft.details,
        )
        connection.execute(
            "INSERT INTO workflow_events (workflow_id, seq, at, event) VALUES (?, ?, ?, ?)",
            (workflow_id, seq, draft.at, WORKFLOW_EVENT.encode(event)),
        )


def _apply_outbox(connection: SqlConnection, updates: Sequence[OutboxUpdate]) -> None:
    for update in updates:
        connection.execute(
            "UPDATE workflow_outbox SET state = ?, attempts = COALESCE(?, attempts), next_attempt_at = ?, "
            "last_error = ?, delivered_at = COALESCE(?, delivered_at), "
            "sent_attempts = COALESCE(?, sent_attempts) WHERE event_id = ?",
            (
                update.state,
                update.attempts,
                update.next_attempt_at,
                update.last_error,
                update.delivered_at,
                update.sent_attempts,
                update.event_id,
            ),
        )


class SqlWorkflowRepository:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._claims = ClaimColumns("workflows", "workflow_id")
        self._outbox_claims = ClaimColumns("workflow_outbox", "event_id")

    # ------------------------------------------------------------------------ create / read
    async def create(
        self, doc: WorkflowDoc, event: EventDraft, claim: IdempotencyClaim | None
    ) -> tuple[StoredWorkflow, bool]:
        """Insert a new workflow (version 1) and lock its instances; returns it and whether it was created.

        With an idempotency claim already recorded for the same body, the earlier workflow is
        returned (created = False); for a different body `IdempotencyMismatch` is raised. An
        instance in another active workflow raises `InstanceBusy`.
        """

        def work(connection: SqlConnection) -> tuple[StoredWorkflow, bool]:
            with connection.transaction():
                if claim is not None:
                    row = connection.execute(
                        "SELECT request_hash, workflow_id FROM workflow_idempotency WHERE scope = ? AND key = ?",
                        (claim.scope, claim.key),
                    ).fetchone()
                    if row is not None:
                        if row[0] != claim.request_hash:
                            raise IdempotencyMismatch(row[1])
                        existing = _select(connection, row[1])
                        if existing is not None:
                            return existing, False
                placeholders = ",".join("?" * len(doc.instance_ids))
                busy = connection.execute(
                    f"SELECT instance_id, workflow_id FROM workflow_instances WHERE active = 1 "  # noqa: S608 - placeholders only
                    f"AND instance_id IN ({placeholders}) ORDER BY instance_id LIMIT 1",
                    doc.instance_ids,
                ).fetchone()
                if busy is not None:
                    raise InstanceBusy(busy[0], busy[1])
                seq = connection.execute(
                    "INSERT INTO workflows (workflow_id, status, version, next_due_at, created_at, doc) "
                    "VALUES (?, ?, 1, ?, ?, ?) RETURNING seq",
                    (doc.workflow_id, doc.status, doc.next_due_at, doc.created_at, WORKFLOW.encode(doc)),
                ).fetchone()[0]
                connection.executemany(
                    "INSERT INTO workflow_instances (workflow_id, instance_id, position, active) VALUES (?, ?, ?, 1)",
                    [(doc.workflow_id, instance_id, i) for i, instance_id in enumerate(doc.instance_ids)],
                )
                _insert_events(connection, doc.workflow_id, [event])
                if claim is not None:
                    connection.execute(
                        "INSERT INTO workflow_idempotency (scope, key, request_hash, workflow_id, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (claim.scope, claim.key, claim.request_hash, doc.workflow_id, doc.created_at),
                    )
                return StoredWorkflow(doc=doc, version=1, seq=int(seq)), True

        return await self._db.run(work)

    async def get(self, workflow_id: str) -> StoredWorkflow | None:
        return await self._db.run(lambda connection: _select(connection, workflow_id))

    async def page(
        self, *, status: str | None, instance_id: str | None, limit: int, before_seq: int | None
    ) -> list[StoredWorkflow]:
        """Newest first; `before_seq` continues after the last item of the previous page."""

        def work(connection: SqlConnection) -> list[StoredWorkflow]:
            sql = "SELECT w.seq, w.version, w.doc FROM workflows w"
            clauses: list[str] = []
            params: list[object] = []
            if instance_id is not None:
                sql += " JOIN workflow_instances i ON i.workflow_id = w.workflow_id AND i.instance_id = ?"
                params.append(instance_id)
            if status is not None:
                clauses.append("w.status = ?")
                params.append(status)
            if before_seq is not None:
                clauses.append("w.seq < ?")
                params.append(before_seq)
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            sql += " ORDER BY w.seq DESC LIMIT ?"
            params.append(limit)
            return [_row_to_stored(row) for row in connection.execute(sql, params)]

        return await self._db.run(work)

    async def of_plan(self, plan_id: str, limit: int) -> list[WorkflowDoc]:
        """Workflows started from the plan, oldest first (a scan: plans are read rarely, workflows are few)."""

        def work(connection: SqlConnection) -> list[WorkflowDoc]:
            plan_of = connection.dialect.json_field("doc", "plan_id")
            rows = connection.execute(
                f"SELECT doc FROM workflows WHERE {plan_of} = ? ORDER BY seq LIMIT ?",  # noqa: S608 - constant SQL
                (plan_id, limit),
            )
            return [WORKFLOW.decode(row[0]) for row in rows]

        return await self._db.run(work)

    async def events(self, workflow_id: str) -> list[WorkflowEvent]:
        def work(connection: SqlConnection) -> list[bytes]:
            rows = connection.execute(
                "SELECT event FROM workflow_events WHERE workflow_id = ? ORDER BY seq", (workflow_id,)
            ).fetchall()
            return [row[0] for row in rows]

        return [WORKFLOW_EVENT.decode(data) for data in await self._db.run(work)]

    async def windows(self, workflow_id: str, limit: int) -> list[WindowRecord]:
        """The newest `limit` windows, oldest first."""

        def work(connection: SqlConnection) -> list[bytes]:
            rows = connection.execute(
                'SELECT "window" FROM workflow_windows WHERE workflow_id = ? ORDER BY seq DESC LIMIT ?',
                (workflow_id, limit),
            ).fetchall()
            return [row[0] for row in reversed(rows)]

        return [WINDOW.decode(data) for data in await self._db.run(work)]

    async def next_window_seq(self, workflow_id: str) -> int:
        def work(connection: SqlConnection) -> int:
            row = connection.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM workflow_windows WHERE workflow_id = ?", (workflow_id,)
            ).fetchone()
            return int(row[0]) + 1

        return await self._db.run(work)

    async def force_release(self, instance_id: str, *, actor: str, at: float, reason: str) -> str | None:
        """Release `instance_id` from its active workflow, recording who did it in that workflow's audit trail.

        The last resort of an admin deleting an instance a rollout still holds: one transaction
        drops the instance's lock and appends the event, so the release is never unrecorded.
        Returns the workflow it was released from (None: it took part in no active workflow).
        """

        def work(connection: SqlConnection) -> str | None:
            with connection.transaction():
                row = connection.execute(
                    "SELECT w.workflow_id, w.doc FROM workflow_instances i JOIN workflows w USING (workflow_id) "
                    "WHERE i.instance_id = ? AND i.active = 1",
                    (instance_id,),
                ).fetchone()
                if row is None:
                    return None
                workflow_id = str(row[0])
                doc = WORKFLOW.decode(row[1])
                connection.execute(
                    "UPDATE workflow_instances SET active = 0 WHERE workflow_id = ? AND instance_id = ?",
                    (workflow_id, instance_id),
                )
                event = EventDraft(
                    type="action",
                    action="force-delete-instance",
                    from_status=doc.status,
                    to_status=doc.status,
                    actor=actor,
                    at=at,
                    stage_index=doc.stage_index,
                    reason=reason,
                    details={"instance_id": instance_id},
                )
                _insert_events(connection, workflow_id, [event])
                return workflow_id

        return await self._db.run(work)

    async def active_workflow_of(self, instance_id: str) -> str | None:
        def work(connection: SqlConnection) -> str | None:
            row = connection.execute(
                "SELECT workflow_id FROM workflow_instances WHERE instance_id = ? AND active = 1", (instance_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._db.run(work)

    async def claim_due(self, now: float, limit: int, *, holder: str, ttl_s: float) -> list[str]:
        """Claim the active workflows whose next look is due and that no other replica holds; most overdue first.

        Reading them as due and claiming them is one statement, so two replicas never both get one.
        The claims last `ttl_s` on the database clock unless extended (`extend_claims`).
        """

        def work(connection: SqlConnection) -> list[str]:
            with connection.transaction():
                return self._claims.claim_due(
                    connection,
                    f"next_due_at IS NOT NULL AND next_due_at <= ? AND status IN {_ACTIVE_SQL}",
                    (now, *_ACTIVE),
                    limit=limit,
                    holder=holder,
                    ttl_s=ttl_s,
                )

        return await self._db.run(work)

    async def release_claims(self, workflow_ids: Sequence[str], holder: str) -> None:
        """Give up `holder`'s claims on these workflows and their outbox calls (their processing ended)."""
        if not workflow_ids:
            return

        def work(connection: SqlConnection) -> None:
            with connection.transaction():
                self._claims.release(connection, "workflow_id", workflow_ids, holder)
                self._outbox_claims.release(connection, "workflow_id", workflow_ids, holder)

        await self._db.run(work)

    async def extend_claims(self, holder: str, ttl_s: float) -> int:
        """Keep `holder`'s workflow and outbox claims for another `ttl_s` (it is still working on them)."""

        def work(connection: SqlConnection) -> int:
            with connection.transaction():
                return self._claims.extend(connection, holder, ttl_s) + self._outbox_claims.extend(
                    connection, holder, ttl_s
                )

        return await self._db.run(work)

    async def forget_claims(self) -> None:
        """Drop every workflow and outbox claim (only for a database this process owns alone)."""

        def work(connection: SqlConnection) -> None:
            with connection.transaction():
                self._claims.forget_all(connection)
                self._outbox_claims.forget_all(connection)

        await self._db.run(work)

    async def count_by_status(self) -> dict[str, int]:
        def work(connection: SqlConnection) -> dict[str, int]:
            rows = connection.execute("SELECT status, COUNT(*) FROM workflows GROUP BY status").fetchall()
            return {str(status): int(count) for status, count in rows}

        return await self._db.run(work)

    # ------------------------------------------------------------------------------ write
    async def save(
        self,
        doc: WorkflowDoc,
        expected_version: int,
        events: Sequence[EventDraft] = (),
        *,
        window: WindowRecord | None = None,
        outbox: Sequence[OutboxUpdate] = (),
    ) -> int:
        """Write the document if still at `expected_version`, with its events, window and outbox changes.

        Returns the new version; raises `VersionConflict` (nothing written) when another writer won.
        Leaving the active statuses releases the workflow's instances in the same transaction.
        """
        write = _Write(events=events, window=window, outbox=outbox)

        def work(connection: SqlConnection) -> int:
            with connection.transaction():
                cursor = connection.execute(
                    "UPDATE workflows SET status = ?, version = version + 1, next_due_at = ?, doc = ? "
                    "WHERE workflow_id = ? AND version = ?",
                    (doc.status, doc.next_due_at, WORKFLOW.encode(doc), doc.workflow_id, expected_version),
                )
                if cursor.rowcount != 1:
                    row = connection.execute(
                        "SELECT version FROM workflows WHERE workflow_id = ?", (doc.workflow_id,)
                    ).fetchone()
                    raise VersionConflict(doc.workflow_id, None if row is None else int(row[0]))
                if not is_active(doc.status):
                    connection.execute(
                        "UPDATE workflow_instances SET active = 0 WHERE workflow_id = ?", (doc.workflow_id,)
                    )
                _insert_events(connection, doc.workflow_id, write.events)
                if write.window is not None:
                    connection.execute(
                        'INSERT INTO workflow_windows (workflow_id, seq, "window") VALUES (?, ?, ?)',
                        (doc.workflow_id, write.window.seq, WINDOW.encode(write.window)),
                    )
                _apply_outbox(connection, write.outbox)
                return expected_version + 1

        return await self._db.run(work)

    # ----------------------------------------------------------------------------- outbox
    async def outbox_claim(self, row: OutboxRow, *, holder: str, ttl_s: float) -> OutboxRow:
        """Store the call unless one with its event id exists, and claim it for `holder` if nobody else has it.

        Returns the stored row (persisted before sending); `holder` may send it only if the row's
        `claimed_by` is `holder`, so each event id is sent by one replica at a time. The claim
        lasts `ttl_s` unless extended, and goes with the workflow's (`release_claims`).
        """

        def work(connection: SqlConnection) -> OutboxRow:
            with connection.transaction():
                connection.execute(
                    "INSERT INTO workflow_outbox "
                    "(event_id, workflow_id, action, stage_index, payload, state, attempts) "
                    "VALUES (?, ?, ?, ?, ?, 'pending', 0) ON CONFLICT DO NOTHING",
                    (row.event_id, row.workflow_id, row.action, row.stage_index, row.payload),
                )
                self._outbox_claims.claim_where(connection, "event_id = ?", (row.event_id,), holder, ttl_s)
                stored = _select_outbox(connection, row.event_id)
            assert stored is not None  # inserted or already there, in this transaction
            return stored

        return await self._db.run(work)

    async def outbox_get(self, event_id: str) -> OutboxRow | None:
        return await self._db.run(lambda connection: _select_outbox(connection, event_id))

    async def outbox_of(self, workflow_id: str) -> list[OutboxRow]:
        def work(connection: SqlConnection) -> list[OutboxRow]:
            rows = connection.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM workflow_outbox WHERE workflow_id = ? "  # noqa: S608 - constant SQL
                f"ORDER BY {connection.dialect.insertion_order}",
                (workflow_id,),
            ).fetchall()
            return [OutboxRow(*row) for row in rows]

        return await self._db.run(work)

    async def outbox_update(self, update: OutboxUpdate) -> None:
        """Record an attempt before it is made (so a crash mid-send is known to have maybe delivered)."""
        await self._db.run(lambda connection: _apply_outbox(connection, [update]))


_OUTBOX_COLUMNS = (
    "event_id, workflow_id, action, stage_index, payload, state, attempts, next_attempt_at, last_error, delivered_at, "
    "sent_attempts, claimed_by"
)


def _select_outbox(connection: SqlConnection, event_id: str) -> OutboxRow | None:
    row = connection.execute(
        f"SELECT {_OUTBOX_COLUMNS} FROM workflow_outbox WHERE event_id = ?",  # noqa: S608 - constant column list
        (event_id,),
    ).fetchone()
    return None if row is None else OutboxRow(*row)


def _select(connection: SqlConnection, workflow_id: str) -> StoredWorkflow | None:
    row = connection.execute("SELECT seq, version, doc FROM workflows WHERE workflow_id = ?", (workflow_id,)).fetchone()
    return None if row is None else _row_to_stored(row)
