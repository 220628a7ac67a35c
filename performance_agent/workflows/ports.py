"""The rollout workflows' storage port: the document, its audit trail, windows, outbox and idempotency keys.

Declared with the workflows that use it; storage/ implements it per backend. Its contract:
every write is all or nothing; `save` rewrites a document only at the version the caller read
(of two concurrent writers exactly one wins, the other gets `VersionConflict`), with the audit
events, window, outbox changes and instance locks that go with it; an instance is in at most one
active workflow (`InstanceBusy`); the outbox holds each actuator call under its stable
`event_id` before it is sent, so a restarted agent resends the same call instead of inventing a
new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.metrics.ports import SnapshotRepository
    from performance_agent.workflows.schemas import WindowRecord, WorkflowEvent
    from performance_agent.workflows.state import EventDraft, WorkflowDoc

__all__ = (
    "IdempotencyClaim",
    "IdempotencyMismatch",
    "InstanceBusy",
    "OutboxRow",
    "OutboxUpdate",
    "RolloutRepositories",
    "StoredWorkflow",
    "VersionConflict",
    "WorkflowRepository",
)


class VersionConflict(Exception):
    """The workflow changed since it was read; the caller re-reads (API: 409)."""

    def __init__(self, workflow_id: str, current_version: int | None) -> None:
        super().__init__(f"workflow {workflow_id} changed (now version {current_version})")
        self.workflow_id = workflow_id
        self.current_version = current_version


class InstanceBusy(Exception):
    """An instance already takes part in an active workflow."""

    def __init__(self, instance_id: str, workflow_id: str) -> None:
        super().__init__(f"instance {instance_id} is in active workflow {workflow_id}")
        self.instance_id = instance_id
        self.workflow_id = workflow_id


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different request body."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"the key was used for workflow {workflow_id} with another body")
        self.workflow_id = workflow_id


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    scope: str
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class StoredWorkflow:
    doc: WorkflowDoc
    version: int
    seq: int


@dataclass(slots=True)
class OutboxRow:
    """One actuator call: sent until delivered or out of attempts; `payload` is the exact JSON body."""

    event_id: str
    workflow_id: str
    action: str
    stage_index: int
    payload: bytes
    state: str = "pending"  # pending | delivered | failed | skipped
    attempts: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    #: Attempts that may have reached the actuator (counted before each attempt, taken back when
    #: it certainly did not connect); 0 means the call changed nothing.
    sent_attempts: int = 0
    #: The replica sending it now (None: nobody); see `WorkflowRepository.outbox_claim`.
    claimed_by: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxUpdate:
    event_id: str
    state: str
    attempts: int | None = None
    next_attempt_at: float | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    sent_attempts: int | None = None


class WorkflowRepository(Protocol):
    async def create(
        self, doc: WorkflowDoc, event: EventDraft, claim: IdempotencyClaim | None
    ) -> tuple[StoredWorkflow, bool]:
        """Insert a new workflow (version 1) and lock its instances; returns it and whether it was created.

        With an idempotency claim already recorded for the same body, the earlier workflow is
        returned (created = False); for a different body `IdempotencyMismatch` is raised. An
        instance in another active workflow raises `InstanceBusy`.
        """
        ...

    async def get(self, workflow_id: str) -> StoredWorkflow | None: ...

    async def page(
        self, *, status: str | None, instance_id: str | None, limit: int, before_seq: int | None
    ) -> list[StoredWorkflow]:
        """Newest first; `before_seq` continues after the last item of the previous page."""
        ...

    async def of_plan(self, plan_id: str, limit: int) -> list[WorkflowDoc]:
        """Workflows started from the plan, oldest first."""
        ...

    async def events(self, workflow_id: str) -> list[WorkflowEvent]:
        """The audit trail, oldest first."""
        ...

    async def windows(self, workflow_id: str, limit: int) -> list[WindowRecord]:
        """The newest `limit` windows, oldest first."""
        ...

    async def next_window_seq(self, workflow_id: str) -> int: ...

    async def force_release(self, instance_id: str, *, actor: str, at: float, reason: str) -> str | None:
        """Release `instance_id` from its active workflow, recording who did it in that workflow's audit trail.

        The release and its event are one write. Returns the workflow it was released from (None:
        it took part in no active workflow).
        """
        ...

    async def active_workflow_of(self, instance_id: str) -> str | None: ...

    async def claim_due(self, now: float, limit: int, *, holder: str, ttl_s: float) -> list[str]:
        """Claim for `holder` the active workflows due by `now` that no other replica holds, most overdue first.

        One replica at a time moves a workflow: a claim lasts `ttl_s` (on the database clock)
        unless extended, so a dead replica's workflows are taken over once it expires.
        """
        ...

    async def release_claims(self, workflow_ids: Sequence[str], holder: str) -> None:
        """Give up `holder`'s claims on these workflows and their outbox calls."""
        ...

    async def extend_claims(self, holder: str, ttl_s: float) -> int:
        """Keep every claim of `holder` (workflows, outbox calls) for `ttl_s` from now (0: expire now); how many."""
        ...

    async def forget_claims(self) -> None:
        """Drop every claim: only on a database this process owns alone, where any claim is stale."""
        ...

    async def count_by_status(self) -> dict[str, int]: ...

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
        Leaving the active statuses releases the workflow's instances in the same write.
        """
        ...

    async def outbox_claim(self, row: OutboxRow, *, holder: str, ttl_s: float) -> OutboxRow:
        """Store the call unless one with its event id exists, and claim it for `holder` unless another has it.

        Returns the stored row (persisted before sending); `holder` sends it only if `claimed_by`
        is `holder`, so each event id is sent by one replica at a time.
        """
        ...

    async def outbox_get(self, event_id: str) -> OutboxRow | None: ...

    async def outbox_of(self, workflow_id: str) -> list[OutboxRow]: ...

    async def outbox_update(self, update: OutboxUpdate) -> None:
        """Record an attempt before it is made (so a crash mid-send is known to have maybe delivered)."""
        ...


class RolloutRepositories(Protocol):
    """The repositories a rollout reads and writes (the composition root's storage has them)."""

    @property
    def instances(self) -> InstanceRepository: ...
    @property
    def snapshots(self) -> SnapshotRepository: ...
    @property
    def workflows(self) -> WorkflowRepository: ...
