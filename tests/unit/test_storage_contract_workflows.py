"""The workflow and judgement repositories keep one contract on every backend (SQLite and PostgreSQL).

What the rollout engine relies on: the optimistic version check (of two writers exactly one
wins), the one-active-workflow-per-instance lock, idempotency keys, an audit trail numbered
without gaps, the outbox storing each event id once, and the due queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from performance_agent.judgements.ports import JudgementVersionConflict
from performance_agent.judgements.state import JudgementDoc
from performance_agent.storage.factory import open_storage
from performance_agent.workflows.ports import (
    IdempotencyClaim,
    IdempotencyMismatch,
    InstanceBusy,
    OutboxRow,
    OutboxUpdate,
    VersionConflict,
)
from performance_agent.workflows.state import EventDraft, WorkflowDoc
from tests.unit.storage_support import BACKENDS, database_url

pytestmark = pytest.mark.parametrize("backend", BACKENDS)

Body = Callable[[Any], Awaitable[None]]


def run(backend: str, tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        storage = open_storage(database_url(backend, tmp_path / "agent.db"))
        await storage.open()
        try:
            await body(storage)
        finally:
            await storage.close()

    asyncio.run(main())


def workflow(workflow_id: str, instances: list[str], **fields: Any) -> WorkflowDoc:
    document: dict[str, Any] = {
        "workflow_id": workflow_id,
        "engine": "vllm",
        "instance_ids": instances,
        "changes": {"max_num_seqs": 256},
        "env": {},
        "previous": {},
        "stages": [10, 50, 100],
        "approval": {},
        "monitor": {},
        "guardrails": {},
        "actuator": {},
        "created_by": "test",
        "created_at": 1.0,
        "updated_at": 1.0,
        "status": "capturing_baseline",
        "status_since": 1.0,
        "next_due_at": 10.0,
    }
    document.update(fields)
    return msgspec.convert(document, WorkflowDoc)


def created(at: float = 1.0) -> EventDraft:
    return EventDraft(
        type="created",
        action="create",
        from_status=None,
        to_status="capturing_baseline",
        actor="t",
        at=at,
        stage_index=0,
    )


def transition(to_status: str, at: float) -> EventDraft:
    return EventDraft(
        type="transition", action="tick", from_status="x", to_status=to_status, actor="agent", at=at, stage_index=0
    )


def test_create_reads_back_and_an_instance_is_in_one_active_workflow_only(backend: str, tmp_path: Path) -> None:
    async def body(storage: Any) -> None:
        first, was_created = await storage.workflows.create(workflow("wf-1", ["a", "b"]), created(), None)
        assert was_created
        assert first.version == 1
        assert first.seq >= 1
        stored = await storage.workflows.get("wf-1")
        assert stored is not None
        assert stored.doc == first.doc
        with pytest.raises(InstanceBusy) as busy:
            await storage.workflows.create(workflow("wf-2", ["b", "c"]), created(), None)
        assert (busy.value.instance_id, busy.value.workflow_id) == ("b", "wf-1")
        assert await storage.workflows.get("wf-2") is None  # nothing of the refused one was kept
        assert await storage.workflows.active_workflow_of("a") == "wf-1"
        assert await storage.workflows.active_workflow_of("c") is None

    run(backend, tmp_path, body)


def test_idempotency_key_returns_the_first_workflow_or_refuses_another_body(backend: str, tmp_path: Path) -> None:
    async def body(storage: Any) -> None:
        claim = IdempotencyClaim(scope="key-1", key="k", request_hash="h1")
        first, _ = await storage.workflows.create(workflow("wf-1", ["a"]), created(), claim)
        again, was_created = await storage.workflows.create(workflow("wf-9", ["z"]), created(), claim)
        assert not was_created
        assert again.doc.workflow_id == first.doc.workflow_id
        with pytest.raises(IdempotencyMismatch):
            await storage.workflows.create(
                workflow("wf-8", ["y"]), created(), IdempotencyClaim(scope="key-1", key="k", request_hash="h2")
            )

    run(backend, tmp_path, body)


def test_of_two_writers_at_one_version_exactly_one_wins(backend: str, tmp_path: Path) -> None:
    async def body(storage: Any) -> None:
        stored, _ = await storage.workflows.create(workflow("wf-1", ["a"]), created(), None)
        doc = stored.doc
        doc.status = "applying"
        outcomes = await asyncio.gather(
            storage.workflows.save(doc, 1, [transition("applying", 2.0)]),
            storage.workflows.save(doc, 1, [transition("applying", 2.0)]),
            return_exceptions=True,
        )
        assert sorted(type(outcome).__name__ for outcome in outcomes) == ["VersionConflict", "int"]
        conflict = next(outcome for outcome in outcomes if isinstance(outcome, VersionConflict))
        assert conflict.current_version == 2
        events = await storage.workflows.events("wf-1")
        assert [event.seq for event in events] == [1, 2]  # the loser's event was not written

    run(backend, tmp_path, body)


def test_leaving_the_active_statuses_releases_the_instances(backend: str, tmp_path: Path) -> None:
    async def body(storage: Any) -> None:
        stored, _ = await storage.workflows.create(workflow("wf-1", ["a"]), created(), None)
        doc = stored.doc
        doc.status, doc.next_due_at = "completed", None
        assert await storage.workflows.save(doc, 1, [transition("completed", 3.0)]) == 2
        assert await storage.workflows.active_workflow_of("a") is None
        await storage.workflows.create(workflow("wf-2", ["a"]), created(), None)  # free again
        assert await storage.workflows.count_by_status() == {"completed": 1, "capturing_baseline": 1}

    run(backend, tmp_path, body)


def test_due_pages_and_plan_lookups(backend: str, tmp_path: Path) -> None:
    async def body(storage: Any) -> None:
        for number, due in enumerate([30.0, 10.0, 20.0]):
            await storage.workflows.create(
                workflow(f"wf-{number}", [f"i-{number}"], next_due_at=due, plan_id=f"plan-{number % 2}"),
                created(),
                None,
            )
        assert await storage.workflows.claim_due(25.0, 10, holder="r-1", ttl_s=10.0) == ["wf-1", "wf-2"]
        assert await storage.workflows.claim_due(25.0, 1, holder="r-1", ttl_s=10.0) == ["wf-1"]
        newest = await storage.workflows.page(status=None, instance_id=None, limit=2, before_seq=None)
        assert [s.doc.workflow_id for s in newest] == ["wf-2", "wf-1"]
        rest = await storage.workflows.page(status=None, instance_id=None, limit=2, before_seq=newest[-1].seq)
        assert [s.doc.workflow_id for s in rest] == ["wf-0"]
        of_instance = await storage.workflows.page(status=None, instance_id="i-1", limit=5, before_seq=None)
        assert [s.doc.workflow_id for s in of_instance] == ["wf-1"]
        assert [d.workflow_id for d in await storage.workflows.of_plan("plan-0", 10)] == ["wf-0", "wf-2"]

    run(backend, tmp_path, body)


def test_the_outbox_keeps_each_event_id_once_in_creation_order(backend: str, tmp_path: Path) -> None:
    async def body(storage: Any) -> None:
        await storage.workflows.create(workflow("wf-1", ["a"]), created(), None)
        apply = OutboxRow(event_id="e-1", workflow_id="wf-1", action="apply", stage_index=0, payload=b'{"n":1}')
        first = await storage.workflows.outbox_claim(apply, holder="r-1", ttl_s=10.0)
        again = await storage.workflows.outbox_claim(
            OutboxRow(event_id="e-1", workflow_id="wf-1", action="apply", stage_index=0, payload=b'{"n":2}'),
            holder="r-1",
            ttl_s=10.0,
        )
        assert first.payload == again.payload == b'{"n":1}'
        assert again.state == "pending"
        await storage.workflows.outbox_claim(
            OutboxRow(event_id="e-2", workflow_id="wf-1", action="rollback", stage_index=0, payload=b"{}"),
            holder="r-1",
            ttl_s=10.0,
        )
        await storage.workflows.outbox_update(
            OutboxUpdate(event_id="e-1", state="delivered", attempts=1, delivered_at=5.0, sent_attempts=1)
        )
        rows = await storage.workflows.outbox_of("wf-1")
        assert [(r.event_id, r.state, r.attempts, r.sent_attempts) for r in rows] == [
            ("e-1", "delivered", 1, 1),
            ("e-2", "pending", 0, 0),
        ]
        assert await storage.workflows.outbox_get("missing") is None

    run(backend, tmp_path, body)


def test_force_release_is_recorded_in_the_audit_trail(backend: str, tmp_path: Path) -> None:
    async def body(storage: Any) -> None:
        await storage.workflows.create(workflow("wf-1", ["a", "b"]), created(), None)
        released = await storage.workflows.force_release("a", actor="admin", at=9.0, reason="server retired")
        assert released == "wf-1"
        assert await storage.workflows.force_release("a", actor="admin", at=9.5, reason="again") is None
        assert await storage.workflows.active_workflow_of("a") is None
        assert await storage.workflows.active_workflow_of("b") == "wf-1"
        events = await storage.workflows.events("wf-1")
        assert events[-1].action == "force-delete-instance"
        assert events[-1].details == {"instance_id": "a"}

    run(backend, tmp_path, body)


def judgement(judgement_id: str, **fields: Any) -> JudgementDoc:
    document: dict[str, Any] = {
        "judgement_id": judgement_id,
        "canary_instance_ids": ["c"],
        "control_instance_ids": ["k"],
        "interval_s": 60.0,
        "max_duration_s": 3600.0,
        "guardrails": {},
        "judge": {},
        "created_by": "test",
        "created_at": 1.0,
        "updated_at": 1.0,
        "next_due_at": 10.0,
    }
    document.update(fields)
    return msgspec.convert(document, JudgementDoc)


def test_judgements_are_due_by_time_and_written_under_a_version(backend: str, tmp_path: Path) -> None:
    async def body(storage: Any) -> None:
        await storage.judgements.create(judgement("j-1", next_due_at=20.0))
        await storage.judgements.create(judgement("j-2", next_due_at=10.0))
        await storage.judgements.create(judgement("j-3", next_due_at=5.0, status="finished"))
        assert await storage.judgements.claim_due(30.0, 10, holder="r-1", ttl_s=10.0) == ["j-2", "j-1"]
        stored = await storage.judgements.get("j-2")
        assert stored is not None
        assert stored.version == 1
        doc = stored.doc
        doc.windows = 1
        assert await storage.judgements.save(doc, 1) == 2
        with pytest.raises(JudgementVersionConflict):
            await storage.judgements.save(doc, 1)
        reread = await storage.judgements.get("j-2")
        assert reread is not None
        assert reread.doc.windows == 1
        assert reread.version == 2
        assert await storage.judgements.get("missing") is None

    run(backend, tmp_path, body)
