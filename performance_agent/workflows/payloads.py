"""What an actuator is sent: the webhook body (signed by `outbound.webhooks`). Pure, so it is tested byte for byte.

The body is built once per stage and action and stored in the outbox before the first attempt;
retries and a restarted agent send exactly the same bytes with the same `event_id`, so a
receiver can de-duplicate on it. Only the signature's timestamp changes between attempts
(a receiver rejecting stale timestamps must not reject a legitimate retry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from performance_agent.workflows.schemas import FlagValue

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.workflows.state import WorkflowDoc

__all__ = (
    "ActuatorPayload",
    "build_payload",
    "decode_payload",
)


class ActuatorPayload(msgspec.Struct, kw_only=True):
    """One call: apply (or revert) `changes`/`env` on `instance_ids`, the instances one stage changes.

    `previous` maps each of those instances to the launch flags its registration declared
    (`engine_args`), or null when it declared none: what a rollback restores.
    """

    workflow_id: str
    event_id: str
    action: Literal["apply", "rollback"]
    engine: str
    stage_index: int
    percent: int
    instance_ids: list[str]
    changes: dict[str, FlagValue]
    env: dict[str, str | None]
    previous: dict[str, dict[str, FlagValue] | None]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ActuatorPayload)


def build_payload(
    doc: WorkflowDoc,
    *,
    event_id: str,
    action: Literal["apply", "rollback"],
    stage_index: int,
    instance_ids: Sequence[str],
) -> bytes:
    payload = ActuatorPayload(
        workflow_id=doc.workflow_id,
        event_id=event_id,
        action=action,
        engine=doc.engine,
        stage_index=stage_index,
        percent=doc.stages[stage_index],
        instance_ids=list(instance_ids),
        changes=dict(doc.changes),
        env=dict(doc.env),
        previous={instance_id: doc.previous.get(instance_id) for instance_id in instance_ids},
    )
    return _encoder.encode(payload)


def decode_payload(body: bytes) -> ActuatorPayload:
    return _decoder.decode(body)
