"""The guard's address reaches the socket: pinned connections, TLS by host name, and fetch limits.

Host names used here (`scrape-target.test`) exist in no DNS: a request can only succeed if the
client dialed the address the guard checked instead of looking the name up again.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from performance_agent.metrics.scraper import ACCEPT_HEADER, ScrapeFailure, fetch_page
from performance_agent.outbound.pinned import ClientsClosedError, OutboundConfigError, PinnedClients, TlsOptions
from performance_agent.outbound.target_guard import ResolvedTarget, check_url, parse_allowlist
from tests.scrape_support import ScriptedServer, scripted_server

__all__ = ("scripted_server",)

T = TypeVar("T")
LOOPBACK = parse_allowlist(["127.0.0.0/8"])
NAME = "scrape-target.test"


def run(work: Callable[[PinnedClients], Awaitable[T]]) -> T:
    async def main() -> T:
        clients = PinnedClients()
        try:
            return await work(clients)
        finally:
            await clients.aclose()

    return asyncio.run(main())


def pinned(url: str, address: str = "127.0.0.1") -> ResolvedTarget:
    async def resolve(host: str, port: int) -> Sequence[str]:
        assert host == NAME
        return [address]

    return asyncio.run(check_url(url, LOOPBACK, resolve))


def failure_of(target: ResolvedTarget, **options: object) -> ScrapeFailure:
    arguments: dict[str, object] = {"headers": {}, "timeout_s": 5.0, "max_bytes": 1 << 20, **options}
    with pytest.raises(ScrapeFailure) as caught:
        run(lambda clients: fetch_page(clients, target, **arguments))  # type: ignore[arg-type]
    return caught.value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_connection_goes_to_the_checked_address_with_the_host_name_kept(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", b"vllm:num_requests_running 3\n")
    target = pinned(f"http://{NAME}:{scripted_server.port}/metrics")
    page = run(
        lambda clients: fetch_page(
            clients, target, headers={"Authorization": "Bearer t0ken"}, timeout_s=5, max_bytes=1024
        )
    )
    assert page.text == "vllm:num_requests_running 3\n"
    assert page.openmetrics is False
    assert page.size_bytes == 28
    assert scripted_server.header_of(0, "Host") == f"{NAME}:{scripted_server.port}"
    assert scripted_server.header_of(0, "Authorization") == "Bearer t0ken"
    assert scripted_server.header_of(0, "Accept") == ACCEPT_HEADER


def test_the_client_refuses_to_dial_anything_the_guard_did_not_pin(scripted_server: ScriptedServer) -> None:
    async def unguarded(clients: PinnedClients) -> None:
        await clients.client(TlsOptions()).get(f"{scripted_server.endpoint}/metrics")

    with pytest.raises(httpx.ConnectError, match="not checked by the target guard"):
        run(unguarded)
    assert scripted_server.requests == []


def test_a_pin_covers_only_its_own_host_and_port(scripted_server: ScriptedServer) -> None:
    target = pinned(f"http://{NAME}:{scripted_server.port}/metrics")
    other = ResolvedTarget(
        url=f"http://127.0.0.1:{scripted_server.port}/metrics",
        scheme="http",
        host="127.0.0.2",
        port=scripted_server.port,
        path="/metrics",
        address="127.0.0.1",
        addresses=("127.0.0.1",),
        host_is_address=True,
    )
    assert failure_of(other).reason == "upstream_unreachable"
    assert scripted_server.requests == []
    scripted_server.serve("/metrics", b"x 1\n")
    assert run(lambda clients: fetch_page(clients, target, headers={}, timeout_s=5, max_bytes=64)).text == "x 1\n"


def test_redirects_are_not_followed(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", status=302, headers={"Location": "http://169.254.169.254/latest/"})
    failure = failure_of(pinned(f"http://{NAME}:{scripted_server.port}/metrics"))
    assert (failure.reason, failure.upstream_status) == ("upstream_error", 302)
    assert "redirects are not followed" in failure.message
    assert [request["path"] for request in scripted_server.requests] == ["/metrics"]


def test_a_non_2xx_answer_is_an_upstream_error_with_its_status(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", b"overloaded", status=503)
    failure = failure_of(pinned(f"http://{NAME}:{scripted_server.port}/metrics"))
    assert (failure.reason, failure.upstream_status) == ("upstream_error", 503)


def test_a_page_declared_larger_than_the_cap_is_refused_before_reading(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", b"a 1\n" * 100)
    failure = failure_of(pinned(f"http://{NAME}:{scripted_server.port}/metrics"), max_bytes=399)
    assert failure.reason == "upstream_invalid_metrics"
    assert "400 bytes, more than PERF_AGENT_SCRAPE_MAX_BYTES (399)" in failure.message


def test_an_undeclared_page_is_cut_off_at_the_cap(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", b"a 1\n" * 50_000, close_delimited=True)
    target = pinned(f"http://{NAME}:{scripted_server.port}/metrics")
    failure = failure_of(target, max_bytes=100_000)
    assert failure.reason == "upstream_invalid_metrics"
    assert "larger than PERF_AGENT_SCRAPE_MAX_BYTES (100000 bytes)" in failure.message
    page = run(lambda clients: fetch_page(clients, target, headers={}, timeout_s=5, max_bytes=200_000))
    assert page.size_bytes == 200_000


def test_a_server_that_never_answers_times_out(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", stall=True)
    failure = failure_of(pinned(f"http://{NAME}:{scripted_server.port}/metrics"), timeout_s=0.2)
    assert failure.reason == "upstream_timeout"
    assert failure.message == "no complete answer within 0.2 s"


def test_a_closed_port_is_unreachable() -> None:
    port = free_port()
    failure = failure_of(pinned(f"http://{NAME}:{port}/metrics"))
    assert failure.reason == "upstream_unreachable"
    assert f"cannot reach {NAME}:{port}" in failure.message


def test_a_page_that_is_not_utf8_is_invalid(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", b"metric\xff 1\n")
    failure = failure_of(pinned(f"http://{NAME}:{scripted_server.port}/metrics"))
    assert failure.reason == "upstream_invalid_metrics"
    assert "not UTF-8" in failure.message


def test_the_openmetrics_content_type_is_reported(scripted_server: ScriptedServer) -> None:
    scripted_server.serve(
        "/metrics",
        b"a_total 1\n# EOF\n",
        headers={"Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8"},
    )
    target = pinned(f"http://{NAME}:{scripted_server.port}/metrics")
    assert run(lambda clients: fetch_page(clients, target, headers={}, timeout_s=5, max_bytes=64)).openmetrics is True


def test_clients_are_shared_per_tls_setting_and_closed_for_good() -> None:
    target = pinned(f"http://{NAME}:9/metrics")

    async def work(clients: PinnedClients) -> None:
        default = clients.client(TlsOptions())
        assert clients.client(TlsOptions()) is default
        assert clients.client(TlsOptions(verify=False)) is not default
        await clients.aclose()
        assert default.is_closed
        with pytest.raises(ClientsClosedError, match="shut down"):
            clients.client(TlsOptions())
        with pytest.raises(ScrapeFailure, match="shut down") as caught:
            await fetch_page(clients, target, headers={}, timeout_s=5, max_bytes=64)
        assert caught.value.reason == "internal_error"

    run(work)


def test_an_unreadable_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(OutboundConfigError, match="cannot be loaded"):
        PinnedClients().client(TlsOptions(ca_bundle=missing))
    target = pinned(f"https://{NAME}:9/metrics")
    tls = TlsOptions(ca_bundle=missing)
    with pytest.raises(ScrapeFailure) as caught:
        run(lambda clients: fetch_page(clients, target, headers={}, timeout_s=5, max_bytes=64, tls=tls))
    assert caught.value.reason == "scrape_config_invalid"


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def tls_server(certificate: tuple[str, str]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(tls=certificate).start()
    server.serve("/metrics", b"sglang:num_running_reqs 1\n")
    yield server
    server.stop()


def test_tls_is_verified_against_the_host_name_while_dialing_the_pinned_address(
    tls_server: ScriptedServer, certificate: tuple[str, str]
) -> None:
    target = pinned(f"https://{NAME}:{tls_server.port}/metrics")
    page = run(
        lambda clients: fetch_page(
            clients, target, headers={}, timeout_s=5, max_bytes=1024, tls=TlsOptions(ca_bundle=certificate[0])
        )
    )
    assert page.text == "sglang:num_running_reqs 1\n"


def test_an_untrusted_certificate_is_refused_unless_verification_is_off(tls_server: ScriptedServer) -> None:
    target = pinned(f"https://{NAME}:{tls_server.port}/metrics")
    failure = failure_of(target)
    assert failure.reason == "upstream_unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in failure.message
    page = run(
        lambda clients: fetch_page(
            clients, target, headers={}, timeout_s=5, max_bytes=1024, tls=TlsOptions(verify=False)
        )
    )
    assert page.text == "sglang:num_running_reqs 1\n"


def test_a_certificate_for_another_name_is_refused(tls_server: ScriptedServer, certificate: tuple[str, str]) -> None:
    async def resolve(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"]

    other = asyncio.run(check_url(f"https://other-name.test:{tls_server.port}/metrics", LOOPBACK, resolve))
    failure = failure_of(other, tls=TlsOptions(ca_bundle=certificate[0]))
    assert failure.reason == "upstream_unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in failure.message
