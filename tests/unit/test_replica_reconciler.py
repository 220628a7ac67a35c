"""Two replicas' reconcilers and outbox drivers on one database: one mover per workflow, one sender per call."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry

from performance_agent.outbound.webhooks import Delivery
from performance_agent.replicas.lease import Claimant
from performance_agent.storage.workflows import SqlWorkflowRepository
from performance_agent.workflows.observability import WorkflowMetrics
from performance_agent.workflows.outbox import OutboxDriver
from performance_agent.workflows.reconciler import Reconciler
from tests.unit.replica_support import run_on_one_database, store_workflows, workflow
from tests.unit.storage_support import BACKENDS

if TYPE_CHECKING:
    from pathlib import Path

    from performance_agent.storage.sql import SqlDatabase
    from performance_agent.workflows.schemas import ActuatorSpec

SHORT_S = 0.25


class HeldActuator:
    """Records every call; holds each one until `release` (a slow actuator, or a replica frozen mid-call)."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.entered = asyncio.Event()
        self.released = asyncio.Event()

    async def deliver(self, spec: ActuatorSpec, payload: bytes) -> Delivery:
        self.calls.append(payload)
        self.entered.set()
        await self.released.wait()
        return Delivery(ok=True)


def driver(repository: SqlWorkflowRepository, actuator: HeldActuator, name: str, ttl_s: float) -> OutboxDriver:
    return OutboxDriver(
        repository, {"webhook": actuator}, retries=2, backoff_s=1.0, claimant=Claimant(replica_id=name, ttl_s=ttl_s)
    )


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_call_is_sent_by_one_replica_and_resent_by_the_next_only_after_expiry(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        repository = SqlWorkflowRepository(one)
        (workflow_id,) = await store_workflows(repository, 1, due=1000.0, status="applying")
        doc = workflow(workflow_id, "vllm-0", 1000.0, "applying")
        a_actuator, b_actuator = HeldActuator(), HeldActuator()
        a = driver(SqlWorkflowRepository(one), a_actuator, "replica-a", SHORT_S)
        b = driver(SqlWorkflowRepository(other), b_actuator, "replica-b", 10.0)
        sending = asyncio.create_task(a.drive(doc, "apply", 0, ["vllm-0"], 1000.0))
        await a_actuator.entered.wait()  # replica-a is mid-call (and then freezes)
        waiting = await b.drive(doc, "apply", 0, ["vllm-0"], 1000.0)
        assert waiting.state == "waiting"
        assert waiting.error == "replica replica-a is sending this call"
        assert waiting.retry_at == 1010.0
        assert b_actuator.calls == []  # not sent twice at once
        await asyncio.sleep(SHORT_S + 0.05)  # replica-a's claim expires
        b_actuator.released.set()
        resent = await b.drive(doc, "apply", 0, ["vllm-0"], 1010.0)
        assert (resent.state, resent.event_id) == ("delivered", waiting.event_id)
        assert b_actuator.calls == a_actuator.calls  # the very same body, under the same event id
        a_actuator.released.set()
        assert (await sending).event_id == waiting.event_id
        rows = await repository.outbox_of(workflow_id)
        assert [row.event_id for row in rows] == [waiting.event_id]

    run_on_one_database(kind, tmp_path, body)


class NoObserver:
    """A workflow waiting for approval needs no scrape; any call here would be a bug."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the observer was used: {name}")


def reconciler(repository: SqlWorkflowRepository, name: str, now: float) -> Reconciler:
    return Reconciler(
        workflows=repository,
        observer=NoObserver(),  # type: ignore[arg-type]
        outbox=driver(repository, HeldActuator(), name, 10.0),
        metrics=WorkflowMetrics(CollectorRegistry()),
        clock=lambda: now,
        claimant=Claimant(replica_id=name, ttl_s=10.0),
    )


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_workflow_another_replica_claimed_is_left_to_it_until_released(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        repository = SqlWorkflowRepository(one)
        ids = await store_workflows(repository, 2, due=1000.0, status="pending_approval")
        for workflow_id in ids:  # the approval deadline has passed: a tick cancels them
            stored = await repository.get(workflow_id)
            assert stored is not None
            stored.doc.approval_deadline = 1500.0
            await repository.save(stored.doc, stored.version)
        elsewhere = SqlWorkflowRepository(other)
        assert await elsewhere.claim_due(2000.0, 1, holder="replica-b", ttl_s=10.0) == ids[:1]
        mover = reconciler(SqlWorkflowRepository(one), "replica-a", 2000.0)
        assert await mover.tick() == ids[1:]
        assert [await status(repository, i) for i in ids] == ["pending_approval", "cancelled"]
        await elsewhere.release_claims(ids[:1], "replica-b")
        assert await mover.tick() == ids[:1]
        assert [await status(repository, i) for i in ids] == ["cancelled", "cancelled"]
        assert await elsewhere.extend_claims("replica-a", 10.0) == 0  # the tick released what it claimed

    run_on_one_database(kind, tmp_path, body)


async def status(repository: SqlWorkflowRepository, workflow_id: str) -> str:
    stored = await repository.get(workflow_id)
    assert stored is not None
    return stored.doc.status
