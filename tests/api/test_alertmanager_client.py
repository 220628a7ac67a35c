"""The Alertmanager client: path, batching, newest state per alert, retries, refusals, the timed resend."""

from __future__ import annotations

import asyncio
import http.server
import threading
from typing import TYPE_CHECKING

import msgspec
import pytest

from performance_agent.outbound.alertmanager import BATCH_SIZE, AlertmanagerClient, alerts_url
from performance_agent.outbound.pinned import PinnedClients
from performance_agent.outbound.target_guard import parse_allowlist
from tests.api.analysis_support import Receiver
from tests.conftest import ClientFactory

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


class Harness:
    def __init__(self, base: str, allow: list[str] | None = None, **options: object) -> None:
        self.outcomes: list[str] = []
        self.waits: list[float] = []
        self.clients = PinnedClients()

        async def no_wait(seconds: float) -> None:
            self.waits.append(seconds)

        self.client = AlertmanagerClient(
            base,
            clients=self.clients,
            allowlist=parse_allowlist(allow if allow is not None else ["127.0.0.1/32"]),
            resolver=loopback,
            on_outcome=self.outcomes.append,
            sleep=no_wait,
            **options,  # type: ignore[arg-type]
        )


def alert(name: str, state: str = "firing") -> bytes:
    return msgspec.json.encode({"labels": {"alertname": name}, "annotations": {}, "endsAt": state})


def test_the_alerts_path_is_appended_to_the_base_url() -> None:
    assert alerts_url("http://am:9093") == "http://am:9093/api/v2/alerts"
    assert alerts_url("http://gw/alertmanager/") == "http://gw/alertmanager/api/v2/alerts"


def test_the_newest_state_of_each_alert_is_sent_in_batches(receiver: Receiver) -> None:
    base = receiver.url.removesuffix("/alerts")
    harness = Harness(base, resend_interval_s=60.0)
    harness.client.submit({"a": alert("a", "firing"), "b": alert("b")})
    harness.client.submit({"a": alert("a", "resolved")})
    harness.client.submit({f"k{i}": alert(f"k{i}") for i in range(BATCH_SIZE)})

    accepted = asyncio.run(harness.client.flush())

    assert accepted == BATCH_SIZE + 2
    first, second = receiver.bodies
    assert [a["labels"]["alertname"] for a in first[:2]] == ["a", "b"]  # type: ignore[index]
    assert first[0]["endsAt"] == "resolved"  # type: ignore[index]
    assert (len(first), len(second)) == (BATCH_SIZE, 2)
    assert harness.outcomes == ["ok", "ok"]
    assert asyncio.run(harness.client.flush()) == 0  # nothing pending, nothing sent
    assert len(receiver.bodies) == 2


def test_server_errors_are_retried_with_doubling_backoff_then_dropped(receiver: Receiver) -> None:
    harness = Harness(receiver.url.removesuffix("/alerts"), resend_interval_s=60.0, attempts=3, backoff_s=0.5)
    receiver.statuses = [503, 429, 500]
    harness.client.submit({"a": alert("a")})

    assert asyncio.run(harness.client.flush()) == 0
    assert len(receiver.bodies) == 3
    assert harness.waits == [0.5, 1.0]
    assert harness.outcomes == ["failed"]

    receiver.statuses = [503]
    harness.client.submit({"a": alert("a")})
    assert asyncio.run(harness.client.flush()) == 1  # the second attempt is accepted
    assert harness.outcomes == ["failed", "ok"]


def test_a_rejected_body_is_not_retried(receiver: Receiver) -> None:
    harness = Harness(receiver.url.removesuffix("/alerts"), resend_interval_s=60.0)
    receiver.statuses = [400]
    harness.client.submit({"a": alert("a")})

    assert asyncio.run(harness.client.flush()) == 0
    assert len(receiver.bodies) == 1
    assert harness.outcomes == ["rejected"]


def test_a_url_the_guard_refuses_is_never_called(receiver: Receiver) -> None:
    harness = Harness(receiver.url.removesuffix("/alerts"), allow=["10.0.0.0/8"], resend_interval_s=60.0)
    harness.client.submit({"a": alert("a")})

    assert asyncio.run(harness.client.flush()) == 0
    assert receiver.bodies == []
    assert harness.outcomes == ["refused"]
    metadata = Harness("http://169.254.169.254", allow=["0.0.0.0/0"], resend_interval_s=60.0)
    metadata.client.submit({"a": alert("a")})
    assert asyncio.run(metadata.client.flush()) == 0
    assert metadata.outcomes == ["refused"]


def test_an_unreachable_alertmanager_fails_after_the_retries() -> None:
    harness = Harness("http://127.0.0.1:9", resend_interval_s=60.0, attempts=2)
    harness.client.submit({"a": alert("a")})

    assert asyncio.run(harness.client.flush()) == 0
    assert harness.outcomes == ["failed"]
    assert harness.waits == [1.0]


def test_the_loop_sends_at_once_and_resends_the_stored_firing_alerts_on_its_interval(receiver: Receiver) -> None:
    resends: list[int] = []

    async def stored_firing() -> Mapping[str, bytes]:
        resends.append(1)
        return {"stored": alert("stored")}

    harness = Harness(receiver.url.removesuffix("/alerts"), resend_interval_s=0.2, resend=stored_firing)

    async def scenario() -> None:
        task = asyncio.create_task(harness.client.run(lambda: None))
        harness.client.submit({"a": alert("a")})
        [first] = await asyncio.to_thread(receiver.wait_for, 1, 10.0)
        assert [a["labels"]["alertname"] for a in first] == ["a"]  # type: ignore[index]
        await asyncio.to_thread(receiver.wait_for, 3, 10.0)  # two timed resends since
        task.cancel()
        await harness.clients.aclose()

    asyncio.run(scenario())
    assert len(resends) >= 2
    assert all(body[0]["labels"]["alertname"] == "stored" for body in receiver.bodies[1:3])  # type: ignore[index]


def test_answers_are_read_only_up_to_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    class Verbose(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(400)
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            self.wfile.write(b"x" * (1 << 20))

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Verbose)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        harness = Harness(f"http://127.0.0.1:{server.server_address[1]}", resend_interval_s=60.0, max_answer_bytes=1024)
        harness.client.submit({"a": alert("a")})
        with caplog.at_level("WARNING", logger="performance_agent.outbound.alertmanager"):
            assert asyncio.run(harness.client.flush()) == 0
        assert harness.outcomes == ["rejected"]
        [record] = [r for r in caplog.records if r.getMessage() == "Alertmanager refused the alerts"]
        assert record.__dict__["answer"] == "x" * 1024  # of the 1 MiB answered
    finally:
        server.shutdown()
        server.server_close()


def test_the_agent_starts_the_sender_loop_only_when_an_alertmanager_url_is_set(client_factory: ClientFactory) -> None:
    without = client_factory()
    with_url = client_factory(alertmanager_url="http://127.0.0.1:9093")

    assert without.app.state["context"].alertmanager is None
    context = with_url.app.state["context"]
    assert context.alertmanager.url == "http://127.0.0.1:9093/api/v2/alerts"
    checks = {check["name"]: check["status"] for check in with_url.get("/api/v1/health/detailed").json()["checks"]}
    assert checks["loop:alertmanager"] == "healthy"
    assert "loop:alertmanager" not in {c["name"] for c in without.get("/api/v1/health/detailed").json()["checks"]}
