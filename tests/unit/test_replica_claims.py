"""Leases and claims between two replicas on one database, judged on the database clock, on every backend.

On PostgreSQL the two replicas are two connection pools, as two agent processes have; on SQLite
they are two sets of repositories over the one database (its file lock keeps a second process
away: with SQLite there is one replica), running the same conditional statements. Expiry is
real: leases and claims of a quarter of a second.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from performance_agent.storage.judgements import SqlJudgementRepository
from performance_agent.storage.leases import SqlLeaseRepository
from performance_agent.storage.workflows import SqlWorkflowRepository
from performance_agent.workflows.ports import OutboxRow
from tests.unit.replica_support import judgement, run_on_one_database, store_workflows, workflow_replicas
from tests.unit.storage_support import BACKENDS

if TYPE_CHECKING:
    from pathlib import Path

    from performance_agent.storage.sql import SqlDatabase

LEASE = "background-loops"
SHORT_S = 0.25


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_database_clock_reads_unix_seconds(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        before = time.time()
        record = await SqlLeaseRepository(one).acquire(LEASE, "a", 10.0)
        after = time.time()
        assert before - 0.01 <= record.now <= after + 0.01  # SQLite's 'now' has millisecond precision
        assert record.expires_at == pytest.approx(record.now + 10.0, abs=0.01)

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_one_replica_leads_the_other_cannot_while_the_lease_lives(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b = SqlLeaseRepository(one), SqlLeaseRepository(other)
        taken = await a.acquire(LEASE, "replica-a", 10.0)
        assert (taken.holder, taken.live) == ("replica-a", True)
        refused = await b.acquire(LEASE, "replica-b", 10.0)
        assert refused.holder == "replica-a"
        assert refused.expires_at == taken.expires_at  # the follower's try changed nothing
        renewed = await a.acquire(LEASE, "replica-a", 10.0)
        assert renewed.holder == "replica-a"
        assert renewed.acquired_at == taken.acquired_at  # the same tenure, renewed
        assert renewed.expires_at >= taken.expires_at

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_follower_takes_the_lease_over_once_it_expires(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b = SqlLeaseRepository(one), SqlLeaseRepository(other)
        first = await a.acquire(LEASE, "replica-a", SHORT_S)
        await asyncio.sleep(SHORT_S + 0.05)  # replica-a died: no renewal
        taken = await b.acquire(LEASE, "replica-b", 10.0)
        assert taken.holder == "replica-b"
        assert taken.acquired_at > first.acquired_at  # a new tenure
        back = await a.acquire(LEASE, "replica-a", 10.0)  # the old leader comes back: it follows
        assert back.holder == "replica-b"

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_released_lease_is_taken_at_once(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b = SqlLeaseRepository(one), SqlLeaseRepository(other)
        await a.acquire(LEASE, "replica-a", 10.0)
        assert not await b.release(LEASE, "replica-b")  # only the holder can release
        assert await a.release(LEASE, "replica-a")
        assert (await b.acquire(LEASE, "replica-b", 10.0)).holder == "replica-b"
        assert await a.read("no-such-lease") is None

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_two_replicas_never_claim_the_same_due_workflow(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b, ids = await workflow_replicas(one, other, 6)
        first = await a.claim_due(2000.0, 4, holder="replica-a", ttl_s=10.0)
        assert first == ids[:4]  # most overdue first, up to the limit
        second = await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0)
        assert second == ids[4:]
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == ids[4:]  # its own, again
        assert await a.claim_due(2000.0, 10, holder="replica-a", ttl_s=10.0) == ids[:4]
        assert await a.claim_due(1000.5, 10, holder="replica-c", ttl_s=10.0) == []  # not due, or held

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_concurrent_claims_split_the_due_workflows(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        repositories = [SqlWorkflowRepository(database) for database in (one, other, one)]
        ids = await store_workflows(repositories[0], 30, due=1000.0)
        held: dict[str, str] = {}
        for _ in range(4):  # racing ticks: a replica that lost a race for its rows gets the rest next time
            claimed = await asyncio.gather(
                *(r.claim_due(2000.0, 12, holder=f"replica-{i}", ttl_s=10.0) for i, r in enumerate(repositories))
            )
            for i, batch in enumerate(claimed):
                for workflow_id in batch:
                    assert held.setdefault(workflow_id, f"replica-{i}") == f"replica-{i}"  # never two holders
        assert sorted(held) == sorted(ids)

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_replicas_claiming_and_releasing_at_once_never_deadlock(kind: str, tmp_path: Path) -> None:
    """Each tick claims due rows and releases them at its end; on PostgreSQL two claiming UPDATEs once
    locked shared rows in opposite orders (DeadlockDetected) until the rows were picked with SKIP LOCKED."""

    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        repositories = [SqlWorkflowRepository(database) for database in (one, other, one, other)]
        ids = await store_workflows(repositories[0], 120, due=1000.0)

        async def ticks(index: int, repository: SqlWorkflowRepository) -> int:
            claimed_total = 0
            for _ in range(30):
                claimed = await repository.claim_due(2000.0, 40, holder=f"replica-{index}", ttl_s=10.0)
                claimed_total += len(claimed)
                await repository.release_claims(claimed, f"replica-{index}")
            return claimed_total

        totals = await asyncio.gather(*(ticks(i, r) for i, r in enumerate(repositories)))
        assert sum(totals) > 0
        assert len(ids) == 120

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_dead_replicas_claims_expire_and_are_taken_over(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b, ids = await workflow_replicas(one, other, 2)
        assert await a.claim_due(2000.0, 10, holder="replica-a", ttl_s=SHORT_S) == ids
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == []
        await asyncio.sleep(SHORT_S + 0.05)
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == ids

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_extended_claims_outlive_their_first_expiry_and_released_ones_are_free(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b, ids = await workflow_replicas(one, other, 2)
        await a.claim_due(2000.0, 10, holder="replica-a", ttl_s=SHORT_S)
        assert await a.extend_claims("replica-a", 10.0) == 2
        await asyncio.sleep(SHORT_S + 0.05)
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == []  # still held
        await b.release_claims(ids, "replica-b")  # not its claims: nothing happens
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == []
        await a.release_claims(ids[:1], "replica-a")
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == ids[:1]
        await a.extend_claims("replica-a", 0.0)  # a clean shutdown hands the rest over at once
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == ids

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_an_outbox_event_id_is_claimed_by_one_replica_at_a_time(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b, (workflow_id,) = await workflow_replicas(one, other, 1)
        call = OutboxRow(event_id="ev-1", workflow_id=workflow_id, action="apply", stage_index=0, payload=b"{}")
        first, second = await asyncio.gather(
            a.outbox_claim(call, holder="replica-a", ttl_s=SHORT_S),
            b.outbox_claim(call, holder="replica-b", ttl_s=SHORT_S),
        )
        assert first.claimed_by == second.claimed_by  # one row, one sender
        winner, loser = (a, b) if first.claimed_by == "replica-a" else (b, a)
        loser_name = "replica-b" if winner is a else "replica-a"
        assert (await loser.outbox_claim(call, holder=loser_name, ttl_s=10.0)).claimed_by != loser_name
        await asyncio.sleep(SHORT_S + 0.05)  # the sender died mid-call: the other resends the same event id
        taken = await loser.outbox_claim(call, holder=loser_name, ttl_s=10.0)
        assert (taken.claimed_by, taken.event_id) == (loser_name, "ev-1")
        assert len(await a.outbox_of(workflow_id)) == 1

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_releasing_a_workflow_releases_its_outbox_calls(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b, (workflow_id,) = await workflow_replicas(one, other, 1)
        call = OutboxRow(event_id="ev-2", workflow_id=workflow_id, action="apply", stage_index=0, payload=b"{}")
        assert (await a.outbox_claim(call, holder="replica-a", ttl_s=10.0)).claimed_by == "replica-a"
        await a.release_claims([workflow_id], "replica-a")
        assert (await b.outbox_claim(call, holder="replica-b", ttl_s=10.0)).claimed_by == "replica-b"

    run_on_one_database(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_judgements_are_claimed_like_workflows(kind: str, tmp_path: Path) -> None:
    async def body(one: SqlDatabase, other: SqlDatabase) -> None:
        a, b = SqlJudgementRepository(one), SqlJudgementRepository(other)
        for i in range(3):
            await a.create(judgement(f"j-{i}", due=1000.0 + i))
        assert await a.claim_due(2000.0, 2, holder="replica-a", ttl_s=SHORT_S) == ["j-0", "j-1"]
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == ["j-2"]
        await asyncio.sleep(SHORT_S + 0.05)
        assert await b.claim_due(2000.0, 10, holder="replica-b", ttl_s=10.0) == ["j-0", "j-1", "j-2"]
        await b.release_claims(["j-0"], "replica-b")
        assert await a.claim_due(2000.0, 10, holder="replica-a", ttl_s=10.0) == ["j-0"]
        await a.forget_claims()
        assert await a.extend_claims("replica-b", 10.0) == 0  # forgotten: nobody holds any

    run_on_one_database(kind, tmp_path, body)
