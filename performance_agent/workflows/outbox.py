"""Driving one actuator call to an outcome: store it, attempt it, back off, give up.

The call is stored (with its `event_id`) before the first attempt and every attempt is counted
before it is made, so after a crash the agent knows a call may have landed and sends the very
same body again rather than a new one. Retries are spread over reconciler ticks
(`next_attempt_at`, doubling from `backoff_s`), so nothing sleeps and a restart keeps the schedule.
The stored call is claimed by the replica sending it: another replica (one that took the workflow
over while this one stalled) waits until the claim is released or expires, so an event id is
sent by one replica at a time; after a takeover the new owner resends the same event id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from performance_agent.workflows.payloads import build_payload
from performance_agent.workflows.ports import OutboxRow, OutboxUpdate
from performance_agent.workflows.state import outbox_event_id

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from performance_agent.replicas.lease import Claimant
    from performance_agent.workflows.actuators import Actuator
    from performance_agent.workflows.ports import WorkflowRepository
    from performance_agent.workflows.state import WorkflowDoc

__all__ = ("CallOutcome", "OutboxDriver")


@dataclass(frozen=True, slots=True)
class CallOutcome:
    state: Literal["delivered", "waiting", "exhausted"]
    event_id: str
    attempts: int
    error: str | None = None
    retry_at: float | None = None
    sent_attempts: int | None = None

    def settle(self, now: float) -> OutboxUpdate:
        """The outbox change to write together with the transition this outcome causes."""
        if self.state == "delivered":
            return OutboxUpdate(self.event_id, "delivered", delivered_at=now, last_error=None)
        return OutboxUpdate(self.event_id, "failed", last_error=self.error, sent_attempts=self.sent_attempts)


class OutboxDriver:
    def __init__(
        self,
        workflows: WorkflowRepository,
        actuators: Mapping[str, Actuator],
        *,
        retries: int,
        backoff_s: float,
        claimant: Claimant,
    ) -> None:
        self._workflows = workflows
        self._claimant = claimant
        self._actuators = actuators
        self._retries = retries
        self._backoff_s = backoff_s

    async def drive(
        self,
        doc: WorkflowDoc,
        action: Literal["apply", "rollback"],
        stage_index: int,
        instance_ids: Sequence[str],
        now: float,
    ) -> CallOutcome:
        event_id = outbox_event_id(doc.workflow_id, action, stage_index)
        payload = build_payload(
            doc, event_id=event_id, action=action, stage_index=stage_index, instance_ids=instance_ids
        )
        claimant = self._claimant
        row = await self._workflows.outbox_claim(
            OutboxRow(
                event_id=event_id, workflow_id=doc.workflow_id, action=action, stage_index=stage_index, payload=payload
            ),
            holder=claimant.replica_id,
            ttl_s=claimant.ttl_s,
        )
        if row.state == "delivered":
            return CallOutcome("delivered", event_id, row.attempts)
        if row.claimed_by != claimant.replica_id:
            return CallOutcome(
                "waiting",
                event_id,
                row.attempts,
                f"replica {row.claimed_by} is sending this call",
                now + claimant.ttl_s,
                row.sent_attempts,
            )
        attempts_before = row.attempts
        if row.state == "failed":
            # Only reachable through retry-rollback (giving up and failing are one transaction):
            # start the attempts over, with the same event id and body.
            attempts_before = 0
        elif row.next_attempt_at is not None and now < row.next_attempt_at:
            return CallOutcome("waiting", event_id, row.attempts, row.last_error, row.next_attempt_at)
        attempts = attempts_before + 1
        # Counted as sent before it is made: a crash mid-call may have delivered it.
        await self._workflows.outbox_update(
            OutboxUpdate(
                event_id,
                "pending",
                attempts=attempts,
                next_attempt_at=None,
                last_error=row.last_error,
                sent_attempts=row.sent_attempts + 1,
            )
        )
        actuator = self._actuators.get(doc.actuator.type)
        sent_attempts = row.sent_attempts
        if actuator is None:
            delivery_error: str | None = f"no {doc.actuator.type} actuator is configured"
        else:
            delivery = await actuator.deliver(doc.actuator, row.payload)
            if delivery.ok:
                return CallOutcome("delivered", event_id, attempts)
            delivery_error = delivery.error
            sent_attempts += int(delivery.sent)
        if attempts > self._retries:
            return CallOutcome("exhausted", event_id, attempts, delivery_error, sent_attempts=sent_attempts)
        retry_at = now + self._backoff_s * 2 ** (attempts - 1)
        await self._workflows.outbox_update(
            OutboxUpdate(
                event_id,
                "pending",
                attempts=attempts,
                next_attempt_at=retry_at,
                last_error=delivery_error,
                sent_attempts=sent_attempts,
            )
        )
        return CallOutcome("waiting", event_id, attempts, delivery_error, retry_at, sent_attempts)
