"""Lease timing and replica identity: when a leader renews, and until when it may act on its own.

Pure: no clock is read here. Why the leader stops before its lease expires: the database judges
expiry on its own clock, and this replica measures from *before* its renewal was sent, on its
monotonic clock, so its deadline falls no later than the stored expiry; the margin covers
stopping the loops. A leader that cannot renew in time (database unreachable, process stalled)
thus stops collecting before any follower can take over: fencing by lease expiry.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("Claimant", "LeaseTiming", "default_replica_id")


@dataclass(frozen=True, slots=True)
class Claimant:
    """Who claims rows (workflows, judgements, outbox calls) and for how long before a claim lapses."""

    replica_id: str
    ttl_s: float


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    ttl_s: float

    @property
    def renew_s(self) -> float:
        """A renewal every third of the lease: two may fail before it lapses."""
        return self.ttl_s / 3

    @property
    def margin_s(self) -> float:
        """How long before the lease's end a leader stops its loops."""
        return min(1.0, self.ttl_s / 10)

    def held_until(self, renewal_sent_at: float) -> float:
        """The monotonic time until which a renewal sent at `renewal_sent_at` lets this replica lead."""
        return renewal_sent_at + self.ttl_s - self.margin_s

    def pause(self, now: float, held_until: float | None) -> float:
        """Seconds until the next renewal: every `renew_s`, but never past the moment leading must stop."""
        if held_until is None:
            return self.renew_s
        return max(0.0, min(self.renew_s, held_until - now))


def default_replica_id(hostname: str, pid: int, suffix: str) -> str:
    """`host-pid-suffix`: tells replicas apart in logs and health, and a restarted process from its predecessor."""
    return f"{hostname or 'agent'}-{pid}-{suffix}"
