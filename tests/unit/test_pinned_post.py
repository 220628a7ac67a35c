"""`post_json_pinned`, the one way actuators and the alert webhook POST: pinned, JSON, and fail-closed after.

The host name (`hook-target.test`) exists in no DNS, so a POST can only arrive if the client
dialed the address the guard checked.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from performance_agent.outbound.pinned import (
    OutboundConfigError,
    PinnedClients,
    PostAnswer,
    TlsOptions,
    post_json_pinned,
)
from performance_agent.outbound.target_guard import ResolvedTarget, check_url, parse_allowlist
from tests.rollout_support import WebhookReceiver

LOOPBACK = parse_allowlist(["127.0.0.0/8"])
NAME = "hook-target.test"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    yield started
    started.stop()


async def pinned(port: int) -> ResolvedTarget:
    async def resolve(host: str, wanted_port: int) -> Sequence[str]:
        assert (host, wanted_port) == (NAME, port)
        return ["127.0.0.1"]

    return await check_url(f"http://{NAME}:{port}/hook", LOOPBACK, resolve)


def port_of(receiver: WebhookReceiver) -> int:
    return int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])


def test_the_post_reaches_the_checked_address_as_json_with_the_callers_headers(receiver: WebhookReceiver) -> None:
    port = port_of(receiver)

    async def post() -> PostAnswer:
        clients = PinnedClients()
        try:
            return await post_json_pinned(
                clients, await pinned(port), b'{"a": 1}', timeout_s=5.0, headers={"X-Signature": "sha256=ab"}
            )
        finally:
            await clients.aclose()

    response = asyncio.run(post())
    assert (response.status_code, response.text) == (200, "{}")
    [delivery] = receiver.deliveries
    assert delivery.path == "/hook"
    assert delivery.body == b'{"a": 1}'
    assert delivery.headers["Host"] == f"{NAME}:{port}"
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-Signature"] == "sha256=ab"


def test_an_error_status_is_returned_and_the_pin_ends_with_the_call(receiver: WebhookReceiver) -> None:
    receiver.script = [503]
    port = port_of(receiver)

    async def post_then_reuse_unpinned() -> tuple[int, BaseException | None]:
        clients = PinnedClients()
        try:
            response = await post_json_pinned(clients, await pinned(port), b"{}", timeout_s=5.0)
            try:
                # a client of its own: the pooled keep-alive connection would need no dial at all
                fresh = clients.client(TlsOptions(verify=False))
                await fresh.post(f"http://{NAME}:{port}/hook", content=b"{}")
            except httpx.ConnectError as refused:
                return response.status_code, refused
            return response.status_code, None
        finally:
            await clients.aclose()

    status, refused = asyncio.run(post_then_reuse_unpinned())
    assert status == 503
    assert refused is not None
    assert "not checked by the target guard" in str(refused)
    assert [delivery.status for delivery in receiver.deliveries] == [503]


def test_a_receiver_that_never_answers_raises_a_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = int(silent.getsockname()[1])

        async def post() -> None:
            clients = PinnedClients()
            try:
                await post_json_pinned(clients, await pinned(port), b"{}", timeout_s=0.3)
            finally:
                await clients.aclose()

        with pytest.raises((TimeoutError, httpx.TimeoutException)):
            asyncio.run(post())


def test_a_closed_port_raises_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])

    async def post() -> None:
        clients = PinnedClients()
        try:
            await post_json_pinned(clients, await pinned(port), b"{}", timeout_s=5.0)
        finally:
            await clients.aclose()

    with pytest.raises(httpx.ConnectError):
        asyncio.run(post())


def test_concurrent_first_requests_build_one_tls_context_per_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first collection cycle asks 64 scrapes at once for one setting: one context, not 64."""
    import performance_agent.outbound.pinned as pinned

    built: list[TlsOptions] = []
    real = pinned._ssl_context

    def counting(tls: TlsOptions) -> object:
        built.append(tls)
        return real(tls)

    monkeypatch.setattr(pinned, "_ssl_context", counting)

    async def main() -> None:
        clients = PinnedClients()
        try:
            first = await asyncio.gather(*(clients.client_for(TlsOptions()) for _ in range(64)))
            other = await asyncio.gather(*(clients.client_for(TlsOptions(verify=False)) for _ in range(8)))
        finally:
            await clients.aclose()
        assert len({id(client) for client in first}) == 1
        assert len({id(client) for client in other}) == 1
        assert built == [TlsOptions(), TlsOptions(verify=False)]

    asyncio.run(main())


def test_a_failed_tls_build_reaches_every_waiter_and_is_retried_next_time(tmp_path: Path) -> None:
    async def main() -> None:
        clients = PinnedClients()
        broken = TlsOptions(ca_bundle=str(tmp_path / "missing.pem"))
        try:
            outcomes = await asyncio.gather(*(clients.client_for(broken) for _ in range(4)), return_exceptions=True)
            assert all(isinstance(outcome, OutboundConfigError) for outcome in outcomes)
            with pytest.raises(OutboundConfigError):
                await clients.client_for(broken)  # not remembered as built: tried again
        finally:
            await clients.aclose()

    asyncio.run(main())
