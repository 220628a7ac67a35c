"""Actuators: who actually changes the servers. A signed webhook per stage, or the simulator's control API.

Both call URLs that API callers supplied, so every call passes the SSRF target guard against
`PERF_AGENT_WEBHOOK_ALLOWLIST` and connects only to the address the guard checked (the pinned
scrape clients; redirects are never followed). One `deliver` is one attempt; retries, backoff
and the outbox that keeps `event_id` stable live in the reconciler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx
import msgspec

from performance_agent.metrics.scraper import post_json_pinned
from performance_agent.outbound.target_guard import ResolutionError, TargetRefusedError, check_url
from performance_agent.workflows.payloads import decode_payload, signature_headers

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.metrics.scraper import ScrapeClients
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist
    from performance_agent.storage.instances import InstanceRepository
    from performance_agent.workflows.payloads import ActuatorPayload
    from performance_agent.workflows.schemas import ActuatorSpec, FlagValue

__all__ = ("Actuator", "Delivery", "HttpPoster", "SimulatorActuator", "WebhookActuator", "simulator_bodies")

_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    error: str | None = None


class Actuator(Protocol):
    async def deliver(self, spec: ActuatorSpec, payload: bytes) -> Delivery:
        """One attempt at the call whose exact body is `payload`."""
        ...


class HttpPoster:
    """POSTs through the guard and the pinned clients: the only way workflow code reaches the network."""

    def __init__(
        self, clients: ScrapeClients, allowlist: TargetAllowlist, resolver: Resolver, timeout_s: float
    ) -> None:
        self._clients = clients
        self._allowlist = allowlist
        self._resolver = resolver
        self._timeout_s = timeout_s

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Delivery:
        try:
            target = await check_url(url, self._allowlist, self._resolver)
        except TargetRefusedError as refused:
            return Delivery(False, f"target_not_allowed: {refused.reason}")
        except ResolutionError as unresolved:
            return Delivery(False, f"unreachable: {unresolved}")
        try:
            response = await post_json_pinned(self._clients, target, body, timeout_s=self._timeout_s, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return Delivery(False, f"timeout: no answer within {self._timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Delivery(False, f"unreachable: {type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Delivery(True)
        return Delivery(False, f"HTTP {response.status_code}: {response.text[:200]}")


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
        if stored is None:
            return None
        base = stored.spec.endpoint.rstrip("/") + stored.spec.metrics_path.removesuffix("/metrics")
        return f"{base}/control/apply"

    async def deliver(self, spec: ActuatorSpec, payload: bytes) -> Delivery:
        decoded = decode_payload(payload)
        failures: list[str] = []
        for instance_id, body in simulator_bodies(decoded).items():
            url = await self._control_url(spec, instance_id)
            if url is None:
                failures.append(f"{instance_id}: not registered")
                continue
            outcome = await self._poster.post(url, body, {})
            if not outcome.ok:
                failures.append(f"{instance_id}: {outcome.error}")
        return Delivery(not failures, "; ".join(failures) or None)
