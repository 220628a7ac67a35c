"""Actuators: who actually changes the servers. A signed webhook per stage, or the simulator's control API.

Both call URLs that API callers supplied, so every call passes the SSRF target guard against
`PERF_AGENT_WEBHOOK_ALLOWLIST` and connects only to the address the guard checked (the pinned
scrape clients; redirects are never followed). One `deliver` is one attempt; retries, backoff
and the outbox that keeps `event_id` stable live in the reconciler.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import msgspec

from performance_agent.outbound.webhooks import Delivery, HttpPoster, signature_headers
from performance_agent.workflows.payloads import decode_payload

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.workflows.payloads import ActuatorPayload
    from performance_agent.workflows.schemas import ActuatorSpec, FlagValue

__all__ = ("Actuator", "SimulatorActuator", "WebhookActuator", "simulator_bodies")

_json = msgspec.json.Encoder()


class Actuator(Protocol):
    async def deliver(self, spec: ActuatorSpec, payload: bytes) -> Delivery:
        """One attempt at the call whose exact body is `payload`."""
        ...


class WebhookActuator:
    """One signed POST of the stored payload to the workflow's webhook URL."""

    def __init__(self, poster: HttpPoster, secret: str | None, clock: Callable[[], float] = time.time) -> None:
        self._poster = poster
        self._secret = secret
        self._clock = clock

    async def deliver(self, spec: ActuatorSpec, payload: bytes) -> Delivery:
        if spec.url is None:
            return Delivery(False, "the webhook actuator has no url")
        headers = signature_headers(self._secret, int(self._clock()), payload)
        return await self._poster.post(spec.url, payload, headers)


def _canonical(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def simulator_bodies(payload: ActuatorPayload) -> dict[str, bytes]:
    """The `/control/apply` body for each instance of the call.

    Apply sends the new flags and variables. Rollback sends, per flag, the value the instance's
    registration declared (null = drop the flag, back to the engine default) and drops the
    variables the change set.
    """
    bodies: dict[str, bytes] = {}
    for instance_id in payload.instance_ids:
        if payload.action == "apply":
            changes: dict[str, FlagValue] = dict(payload.changes)
            env: dict[str, str | None] = dict(payload.env)
        else:
            declared = {_canonical(name): value for name, value in (payload.previous.get(instance_id) or {}).items()}
            changes = {flag: declared.get(_canonical(flag)) for flag in payload.changes}
            env = dict.fromkeys(payload.env)
        bodies[instance_id] = _json.encode({"changes": changes, "env": env})
    return bodies


class SimulatorActuator:
    """POSTs `/control/apply` to every simulated instance of the stage (the simulator restarts it)."""

    def __init__(self, poster: HttpPoster, instances: InstanceRepository) -> None:
        self._poster = poster
        self._instances = instances

    async def _control_url(self, spec: ActuatorSpec, instance_id: str) -> str | None:
        if spec.url is not None:
            return f"{spec.url.rstrip('/')}/i/{instance_id}/control/apply"
        stored = await self._instances.get(instance_id)
        if stored is None or stored.spec.endpoint is None:
            return None
        base = stored.spec.endpoint.rstrip("/") + stored.spec.metrics_path.removesuffix("/metrics")
        return f"{base}/control/apply"

    async def deliver(self, spec: ActuatorSpec, payload: bytes) -> Delivery:
        decoded = decode_payload(payload)
        failures: list[str] = []
        sent = False
        for instance_id, body in simulator_bodies(decoded).items():
            url = await self._control_url(spec, instance_id)
            if url is None:
                failures.append(f"{instance_id}: not registered, or registered without an endpoint to actuate")
                continue
            outcome = await self._poster.post(url, body, {})
            sent = sent or outcome.sent
            if not outcome.ok:
                failures.append(f"{instance_id}: {outcome.error}")
        return Delivery(not failures, "; ".join(failures) or None, sent=sent)
