"""The storage ports of replica coordination: the leader lease, and the repositories whose rows replicas claim.

storage/leases.py implements `LeaseRepository`; the workflow and judgement repositories are
`ClaimKeeper`s. Times are Unix seconds on the database clock, the one clock replicas share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ("ClaimKeeper", "LeaseRecord", "LeaseRepository")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A lease as stored, read with the database's clock (`now`) at that moment."""

    name: str
    holder: str
    acquired_at: float
    expires_at: float
    now: float

    @property
    def live(self) -> bool:
        return self.expires_at > self.now


class LeaseRepository(Protocol):
    async def acquire(self, name: str, holder: str, ttl_s: float) -> LeaseRecord:
        """Take the lease if free or expired, or renew it if `holder` has it; the lease as it now stands.

        The caller holds the lease iff the returned record's holder is `holder`.
        """
        ...

    async def read(self, name: str) -> LeaseRecord | None: ...

    async def release(self, name: str, holder: str) -> bool:
        """Give the lease up if `holder` has it (a clean shutdown); whether it did."""
        ...

    async def forget_all(self) -> None:
        """Drop every lease: only on a database this process owns alone, where any is stale."""
        ...


class ClaimKeeper(Protocol):
    """A repository whose rows replicas claim (workflows with their outbox calls, judgements)."""

    async def extend_claims(self, holder: str, ttl_s: float) -> int: ...

    async def forget_claims(self) -> None: ...
