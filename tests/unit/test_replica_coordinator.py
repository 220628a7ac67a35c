"""The leader election: two coordinators on one database, a dead leader, a leader that cannot renew.

Lease timing itself is pure (`LeaseTiming`) and tested with plain numbers; the coordinators run
against the real lease repository with short leases, so expiry is the database clock's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from performance_agent.replicas.coordinator import LEADER_LEASE, ReplicaCoordinator
from performance_agent.replicas.lease import LeaseTiming, default_replica_id
from performance_agent.replicas.ports import LeaseRecord
from performance_agent.storage.leases import SqlLeaseRepository
from tests.unit.replica_support import run_on_one_database
from tests.unit.storage_support import BACKENDS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from performance_agent.storage.sql import SqlDatabase


def test_a_leader_renews_every_third_and_stops_before_its_lease_ends() -> None:
    timing = LeaseTiming(ttl_s=9.0)
    assert timing.renew_s == 3.0
    assert timing.margin_s == 0.9
    assert timing.held_until(100.0) == pytest.approx(108.1)
    assert timing.pause(100.0, None) == 3.0  # a follower tries every renewal interval
    assert timing.pause(100.0, 108.1) == 3.0
    assert timing.pause(106.0, 108.1) == pytest.approx(2.1)  # wakes in time to stop
    assert timing.pause(109.0, 108.1) == 0.0
    assert LeaseTiming(ttl_s=30.0).margin_s == 1.0


def test_a_default_replica_id_names_host_and_process() -> None:
    assert default_replica_id("node-a", 4242, "9f2c1e") == "node-a-4242-9f2c1e"
    assert default_replica_id("", 7, "00aa11") == "agent-7-00aa11"


class Loops:
    """What the context does on election and deposition, recorded."""

    def __init__(self) -> None:
        self.running = False
        self.history: list[str] = []

    async def elected(self) -> None:
        self.running = True
        self.history.append("elected")

    async def deposed(self) -> None:
        self.running = False
        self.history.append("deposed")


def coordinator(name: str, leases: SqlLeaseRepository, loops: Loops, ttl_s: float) -> ReplicaCoordinator:
    return ReplicaCoordinator(
        replica_id=name,
        leases=leases,
        claims=(),
        timing=LeaseTiming(ttl_s),
        on_elected=loops.elected,
        on_deposed=loops.deposed,
    )


async def two_replicas(
    leases: SqlLeaseRepository, other_leases: SqlLeaseRepository, ttl_s: float
) -> tuple[ReplicaCoordinator, Loops, ReplicaCoordinator, Loops]:
    """replica-a (started first: it leads) and replica-b, each with the loops it would run."""
    a_loops, b_loops = Loops(), Loops()
    a = coordinator("replica-a", leases, a_loops, ttl_s=ttl_s)
    b = coordinator("replica-b", other_leases, b_loops, ttl_s=ttl_s)
    await a.start()
    return a, a_loops, b, b_loops


def run_with_leases(
    kind: str, tmp_path: Path, body: Callable[[SqlLeaseRepository, SqlLeaseRepository], Awaitable[None]]
) -> None:
    """`body` with two replicas' lease repositories on one new database of `kind`."""

    async def both(one: SqlDatabase, other: SqlDatabase) -> None:
        await body(SqlLeaseRepository(one), SqlLeaseRepository(other))

    run_on_one_database(kind, tmp_path, both)


@pytest.mark.parametrize("kind", BACKENDS)
def test_one_coordinator_leads_the_other_follows_and_takes_over_when_it_dies(kind: str, tmp_path: Path) -> None:
    async def body(leases: SqlLeaseRepository, other_leases: SqlLeaseRepository) -> None:
        a, a_loops, b, b_loops = await two_replicas(leases, other_leases, ttl_s=0.5)
        await b.start()
        assert (a.is_leader, b.is_leader) == (True, False)
        assert (a_loops.running, b_loops.running) == (True, False)
        assert b.leader is not None
        assert b.leader.holder == "replica-a"
        await a.step()
        await b.step()
        assert (a.is_leader, b.is_leader) == (True, False)  # renewed, still refused
        await asyncio.sleep(0.55)  # replica-a is killed: it renews no more
        await b.step()
        assert b.is_leader
        assert b_loops.history == ["elected"]
        assert b.leader is not None
        assert b.leader.holder == "replica-b"
        await a.step()  # the old leader wakes up: it was past its own deadline, and the lease is taken
        assert not a.is_leader
        assert a_loops.history == ["elected", "deposed"]

    run_with_leases(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_clean_shutdown_hands_the_lease_over_at_once(kind: str, tmp_path: Path) -> None:
    async def body(leases: SqlLeaseRepository, other_leases: SqlLeaseRepository) -> None:
        a, a_loops, b, _ = await two_replicas(leases, other_leases, ttl_s=30.0)
        await a.stop()
        assert a_loops.history == ["elected", "deposed"]
        await b.start()
        assert b.is_leader

    run_with_leases(kind, tmp_path, body)


class StalledLeases:
    """A database that answered once, then hangs: the leader must stop before its lease can expire."""

    def __init__(self, real: SqlLeaseRepository) -> None:
        self._real = real
        self.calls = 0

    async def acquire(self, name: str, holder: str, ttl_s: float) -> LeaseRecord:
        self.calls += 1
        if self.calls > 1:
            await asyncio.Event().wait()
        return await self._real.acquire(name, holder, ttl_s)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_leader_that_cannot_renew_stops_its_loops_before_the_lease_expires(kind: str, tmp_path: Path) -> None:
    async def body(leases: SqlLeaseRepository, other_leases: SqlLeaseRepository) -> None:
        loops = Loops()
        stalled = StalledLeases(leases)
        leader = ReplicaCoordinator(
            replica_id="replica-a",
            leases=stalled,  # type: ignore[arg-type]
            claims=(),
            timing=LeaseTiming(1.0),
            on_elected=loops.elected,
            on_deposed=loops.deposed,
        )
        await leader.step()
        assert leader.is_leader
        started = asyncio.get_running_loop().time()
        await leader.step()  # hangs on the database until the leader's own deadline
        waited = asyncio.get_running_loop().time() - started
        assert not leader.is_leader
        assert loops.history == ["elected", "deposed"]
        assert waited < 0.9 + 0.1  # held_until = sent + ttl - margin (0.1 s)
        record = await leases.read(LEADER_LEASE)
        assert record is not None
        assert record.live  # stopped while the stored lease still ran: no follower could have led yet

    run_with_leases(kind, tmp_path, body)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_replica_whose_loops_fail_to_start_gives_the_lease_up(kind: str, tmp_path: Path) -> None:
    async def body(leases: SqlLeaseRepository, other_leases: SqlLeaseRepository) -> None:
        history: list[str] = []

        async def broken() -> None:
            history.append("elected")
            raise RuntimeError("collector would not start")

        async def deposed() -> None:
            history.append("deposed")

        replica = ReplicaCoordinator(
            replica_id="replica-a",
            leases=leases,
            claims=(),
            timing=LeaseTiming(10.0),
            on_elected=broken,
            on_deposed=deposed,
        )
        await replica.step()
        assert not replica.is_leader
        assert history == ["elected", "deposed"]
        assert replica.leader is None
        assert await leases.read(LEADER_LEASE) is None  # free for a replica whose loops work

    run_with_leases(kind, tmp_path, body)
