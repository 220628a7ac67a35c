"""Actuators over real sockets: the guard, timeouts, refusals, non-2xx answers, and the simulator's URLs."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import msgspec
import pytest

from performance_agent.clock import utc
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.outbound.pinned import PinnedClients
from performance_agent.outbound.target_guard import parse_allowlist, system_resolver
from performance_agent.outbound.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    HttpPoster,
    verify_signature,
)
from performance_agent.simulator.fleet import ManualClock, start_simulator
from performance_agent.storage.database import SqliteDatabase
from performance_agent.storage.instances import SqlInstanceRepository
from performance_agent.workflows.actuators import SimulatorActuator, WebhookActuator
from performance_agent.workflows.payloads import build_payload
from performance_agent.workflows.schemas import ActuatorSpec
from tests.rollout_support import WebhookReceiver
from tests.unit.test_workflow_payloads import doc

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "s"
LOOPBACK = parse_allowlist(["127.0.0.1/32"], "PERF_AGENT_WEBHOOK_ALLOWLIST")
PAYLOAD = build_payload(doc(), event_id="e-1", action="apply", stage_index=0, instance_ids=["a"])


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    yield started
    started.stop()


async def post_once(actuator_for: str, url: str, *, timeout_s: float = 2.0, secret: str | None = SECRET) -> Delivery:
    clients = PinnedClients()
    try:
        poster = HttpPoster(clients, LOOPBACK, system_resolver, timeout_s)
        actuator = WebhookActuator(poster, secret, clock=lambda: 1_700_000_000.0)
        return await actuator.deliver(ActuatorSpec(type="webhook", url=url if actuator_for else None), PAYLOAD)
    finally:
        await clients.aclose()


def test_a_webhook_is_signed_and_2xx_is_done(receiver: WebhookReceiver) -> None:
    delivery = asyncio.run(post_once("webhook", receiver.url))
    assert delivery == Delivery(True)
    sent = receiver.deliveries[0]
    assert sent.body == PAYLOAD
    assert sent.headers[TIMESTAMP_HEADER] == "1700000000"
    assert verify_signature("s", "1700000000", sent.headers[SIGNATURE_HEADER], sent.body)


def test_without_a_secret_the_call_is_unsigned(receiver: WebhookReceiver) -> None:
    asyncio.run(post_once("webhook", receiver.url, secret=None))
    headers = {name.lower() for name in receiver.deliveries[0].headers}
    assert TIMESTAMP_HEADER.lower() not in headers
    assert SIGNATURE_HEADER.lower() not in headers


def test_a_non_2xx_answer_is_a_failed_attempt(receiver: WebhookReceiver) -> None:
    receiver.script.append(409)
    delivery = asyncio.run(post_once("webhook", receiver.url))
    assert (delivery.ok, delivery.error) == (False, "HTTP 409: {}")


def test_targets_outside_the_allowlist_are_never_called() -> None:
    delivery = asyncio.run(post_once("webhook", "http://169.254.169.254/latest/meta-data"))
    assert delivery.ok is False
    assert str(delivery.error).startswith("target_not_allowed: ")
    outside = asyncio.run(post_once("webhook", "http://10.9.8.7/hook"))
    assert str(outside.error).startswith("target_not_allowed: ")
    missing = asyncio.run(post_once("", "http://127.0.0.1:1/hook"))
    assert missing.error == "the webhook actuator has no url"


def test_unreachable_and_silent_receivers_fail_within_the_timeout() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = asyncio.run(post_once("webhook", f"http://127.0.0.1:{port}/hook"))
    assert str(refused.error).startswith("unreachable: ")
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        slow = asyncio.run(post_once("webhook", f"http://127.0.0.1:{silent.getsockname()[1]}/hook", timeout_s=0.2))
    assert slow.error == "timeout: no answer within 0.2 s"
    unknown = asyncio.run(post_once("webhook", "http://no-such-host.invalid/hook"))
    assert unknown.ok is False


def test_the_simulator_actuator_uses_the_hub_or_each_instance_s_own_url() -> None:
    clock = ManualClock()
    with start_simulator("vllm", 2, clock=clock) as fleet:

        async def scenario() -> tuple[Delivery, Delivery, Delivery]:
            database = SqliteDatabase(":memory:")
            await database.open()
            clients = PinnedClients()
            try:
                instances = SqlInstanceRepository(database)
                own = fleet.handle("vllm-1")
                spec = msgspec.convert(
                    {"engine": "vllm", "endpoint": own.endpoint, "metrics_path": own.metrics_path}, InstanceSpec
                )
                await instances.create("vllm-1", spec, utc(clock()))
                actuator = SimulatorActuator(HttpPoster(clients, LOOPBACK, system_resolver, 2.0), instances)
                hub = fleet.handle("vllm-0").control_url.split("/i/")[0]
                workflow = doc()
                workflow.changes = {"--max-num-seqs": 64}
                workflow.env = {}
                via_hub = build_payload(workflow, event_id="x", action="apply", stage_index=0, instance_ids=["vllm-0"])
                direct = build_payload(workflow, event_id="y", action="apply", stage_index=1, instance_ids=["vllm-1"])
                ghost = build_payload(workflow, event_id="z", action="apply", stage_index=2, instance_ids=["ghost"])
                return (
                    await actuator.deliver(ActuatorSpec(type="simulator", url=hub), via_hub),
                    await actuator.deliver(ActuatorSpec(type="simulator"), direct),
                    await actuator.deliver(ActuatorSpec(type="simulator"), ghost),
                )
            finally:
                await clients.aclose()
                await database.close()

        by_hub, by_own_url, unregistered = asyncio.run(scenario())
        assert by_hub.ok
        assert by_own_url.ok
        assert fleet.state("vllm-0")["flags"] == {"--max-num-seqs": 64}
        assert fleet.state("vllm-1")["flags"] == {"--max-num-seqs": 64}
        assert unregistered.error == "ghost: not registered, or registered without an endpoint to actuate"
