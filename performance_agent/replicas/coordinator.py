"""The leader election of the background loops, and the keep-alive of this replica's claims.

Every replica runs one `ReplicaCoordinator` loop. Each pass it tries to take or renew the
leader lease (one conditional statement, judged on the database clock: `storage.leases`) and
extends the claims it holds on workflows, judgements and outbox calls. The replica that holds
the lease runs the leader-only loops (collection, discovery, alert evaluation, history
retention) through `on_elected`; when it loses the lease, or cannot renew it before its own
deadline (`LeaseTiming.held_until`), `on_deposed` stops them. Followers keep trying, so when the
leader dies its lease expires (the lease TTL) and one of them takes over within one renewal.
The same pattern as Kubernetes' client-go leader election (a lease record renewed every few
seconds, taken when expired: https://pkg.go.dev/k8s.io/client-go/tools/leaderelection).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from performance_agent.background import Heartbeat
    from performance_agent.replicas.lease import LeaseTiming
    from performance_agent.replicas.ports import ClaimKeeper, LeaseRecord, LeaseRepository

__all__ = ("LEADER_LEASE", "LeaderView", "ReplicaCoordinator")

logger = logging.getLogger("performance_agent.replicas")

#: The name of the lease whose holder runs collection, discovery and alert evaluation.
LEADER_LEASE = "background-loops"


@dataclass(frozen=True, slots=True)
class LeaderView:
    """The leader lease as this replica last read it (Unix seconds on the database clock)."""

    holder: str
    since: float
    expires_at: float


class ReplicaCoordinator:
    def __init__(
        self,
        *,
        replica_id: str,
        leases: LeaseRepository,
        claims: Sequence[ClaimKeeper],
        timing: LeaseTiming,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
        exclusive: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.replica_id = replica_id
        self.timing = timing
        self._leases = leases
        self._claims = claims
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._exclusive = exclusive
        self._monotonic = monotonic
        self._sleep = sleep
        self._held_until: float | None = None
        #: The lease as last read (None: nobody held it, or it was never read).
        self.leader: LeaderView | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this replica runs the leader-only loops now."""
        return self._held_until is not None

    async def start(self) -> None:
        """Clear what dead processes left (only when this process is alone on the database), then try once.

        Tried once before the loop starts so that a single replica leads from its first moment.
        """
        if self._exclusive:
            await self._leases.forget_all()
            for keeper in self._claims:
                await keeper.forget_claims()
        await self.step()

    async def run(self, beat: Heartbeat) -> None:
        """The loop body for `BackgroundLoops.start`."""
        while True:
            beat()
            await self._sleep(self.timing.pause(self._monotonic(), self._held_until))
            await self.step()

    async def step(self) -> None:
        """Fence if the lease ran out, try to take or renew it, then extend this replica's claims."""
        await self._fence()
        sent_at = self._monotonic()
        try:
            record = await asyncio.wait_for(
                self._leases.acquire(LEADER_LEASE, self.replica_id, self.timing.ttl_s), timeout=self._patience(sent_at)
            )
        except Exception as exc:  # the database is unreachable or slow: keep leading only while the lease lasts
            logger.warning("leader lease not renewed", extra={"replica": self.replica_id, "error": repr(exc)})
            await self._fence()
        else:
            await self._observe(record, sent_at)
        await self._extend_claims()

    async def stop(self) -> None:
        """A clean shutdown: stop leading, and hand the lease and every claim over at once instead of at expiry."""
        try:
            if self.is_leader:
                await self._depose("shutting down")
                await self._leases.release(LEADER_LEASE, self.replica_id)
            for keeper in self._claims:
                await keeper.extend_claims(self.replica_id, 0.0)  # expire now
        except Exception:
            logger.exception("lease or claims not handed over; they expire", extra={"replica": self.replica_id})

    def _patience(self, sent_at: float) -> float:
        """How long a renewal may take: a leader must know before its deadline; a follower waits one lease."""
        if self._held_until is None:
            return self.timing.ttl_s
        return max(0.001, self._held_until - sent_at)

    async def _observe(self, record: LeaseRecord, sent_at: float) -> None:
        self.leader = LeaderView(record.holder, record.acquired_at, record.expires_at) if record.live else None
        if record.holder != self.replica_id:
            if self.is_leader:
                await self._depose(f"the lease is held by {record.holder}")
            return
        elected = not self.is_leader
        self._held_until = self.timing.held_until(sent_at)
        if elected:
            logger.info("leading the background loops", extra={"replica": self.replica_id})
            try:
                await self._on_elected()
            except Exception:
                # Let another replica lead rather than hold a lease whose loops do not run.
                logger.exception("starting the leader loops failed", extra={"replica": self.replica_id})
                await self._depose("the leader loops did not start")
                await self._leases.release(LEADER_LEASE, self.replica_id)
                self.leader = None

    async def _fence(self) -> None:
        if self._held_until is not None and self._monotonic() >= self._held_until:
            await self._depose("the lease could not be renewed before it ran out")

    async def _depose(self, reason: str) -> None:
        self._held_until = None
        logger.warning("no longer leading the background loops", extra={"replica": self.replica_id, "reason": reason})
        await self._on_deposed()

    async def _extend_claims(self) -> None:
        for keeper in self._claims:
            try:
                await keeper.extend_claims(self.replica_id, self.timing.ttl_s)
            except Exception as exc:
                logger.warning("claims not extended", extra={"replica": self.replica_id, "error": repr(exc)})
