"""The instance registry's storage port: what the fleet and its readers need from a repository.

Why here and not in storage/: the registry defines what an instance record is and which
operations it needs; storage/ implements this protocol for each backend (SQLite today), so the
dependency points from storage to the domain and a new backend changes nothing that uses it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import msgspec

from performance_agent.fleet.schemas import InstanceError, InstanceSpec, InstanceStatus

__all__ = ("InstanceExistsError", "InstanceRepository", "InstanceState", "StoredInstance")


class InstanceExistsError(Exception):
    """`create` found the id taken."""


class InstanceState(msgspec.Struct, kw_only=True):
    status: InstanceStatus = "pending"
    last_seen: datetime | None = None
    last_scrape_at: datetime | None = None
    last_error: InstanceError | None = None
    consecutive_failures: int = 0


class StoredInstance(msgspec.Struct, kw_only=True):
    instance_id: str
    spec: InstanceSpec
    created_at: datetime
    updated_at: datetime
    state: InstanceState = msgspec.field(default_factory=InstanceState)


class InstanceRepository(Protocol):
    async def get(self, instance_id: str) -> StoredInstance | None: ...

    async def list(self, *, engine: str | None = None, status: str | None = None) -> list[StoredInstance]:
        """Every instance (optionally of one engine / status), ordered by id."""
        ...

    async def create(self, instance_id: str, spec: InstanceSpec, now: datetime) -> StoredInstance:
        """Raises `InstanceExistsError` when the id is taken."""
        ...

    async def replace(self, instance_id: str, spec: InstanceSpec, now: datetime) -> StoredInstance | None:
        """Replace the spec of a known instance (its state is kept); None when unknown."""
        ...

    async def upsert(self, instance_id: str, spec: InstanceSpec, now: datetime) -> tuple[StoredInstance, bool]:
        """Create or replace; the flag says whether it was created."""
        ...

    async def delete(self, instance_id: str) -> bool:
        """Remove the instance and all its snapshots; False when unknown."""
        ...

    async def record_failure(self, instance_id: str, error: InstanceError) -> bool:
        """Mark the last scrape failed; False when the instance no longer exists."""
        ...
