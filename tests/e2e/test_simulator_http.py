"""The simulator over real sockets on 127.0.0.1: pages, control API, faults, fleet lifecycle, CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from performance_agent.simulator import ManualClock, SimulatedFleet, SimulatedServerSpec, start_simulator
from performance_agent.simulator.cli import main
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.e2e


def values(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_mixed_fleet_serves_each_engine_and_its_info_route(clock: ManualClock) -> None:
    specs = [
        SimulatedServerSpec("vllm", "v"),
        SimulatedServerSpec("tgi", "t"),
        SimulatedServerSpec("sglang", "s", version="old"),
    ]
    with SimulatedFleet(specs, clock=clock) as fleet, httpx.Client(timeout=5) as client:
        clock.advance(30)
        pages = {h.instance_id: client.get(h.metrics_url) for h in fleet.instances}
        assert {k: r.status_code for k, r in pages.items()} == {"v": 200, "t": 200, "s": 200}
        assert pages["v"].headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert pages["t"].headers["content-type"] == "text/plain; charset=utf-8"
        assert values(pages["v"].text)["vllm:prompt_tokens_total"] > 0
        assert values(pages["t"].text)["tgi_request_count_total"] > 0
        assert "sglang:time_per_output_token_seconds_sum" in values(pages["s"].text)
        assert client.get(fleet.handle("t").base_url + "/info").json()["max_total_tokens"] == 8192
        assert "max_total_num_tokens" in client.get(fleet.handle("s").base_url + "/get_server_info").json()
        assert client.get(fleet.handle("v").base_url + "/version").json() == {"version": "0.30.0"}
        listing = client.get(fleet.handle("v").control_url.split("/i/")[0] + "/fleet").json()
        assert [row["instance_id"] for row in listing] == ["v", "t", "s"]
        for _ in range(3):  # one pooled keep-alive connection serves repeated scrapes
            assert client.get(fleet.handle("v").metrics_url).status_code == 200


def test_stop_closes_every_port_and_joins_the_thread(clock: ManualClock) -> None:
    threads_before = threading.active_count()
    fleet = start_simulator("tgi", 3, clock=clock)
    ports = [port_of(h.endpoint) for h in fleet.instances] + [port_of(fleet.instances[0].control_url)]
    assert threading.active_count() == threads_before + 1
    assert not any(refused(port) for port in ports)
    fleet.stop()
    assert threading.active_count() == threads_before
    assert all(refused(port) for port in ports)
    fleet.stop()  # idempotent


def test_unreachable_really_refuses_while_the_hub_control_api_answers(clock: ManualClock) -> None:
    with start_simulator("vllm", 2, clock=clock) as fleet, httpx.Client(timeout=5) as client:
        target, other = fleet.instances
        response = client.post(target.control_url + "/faults", json={"unreachable": True})
        assert response.json()["faults"] == {"unreachable": True}
        with pytest.raises(httpx.ConnectError):
            httpx.get(target.metrics_url, timeout=5)
        hub = target.control_url.removesuffix("/control")
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(hub + "/metrics", timeout=5)  # shared port: closed without an answer
        assert client.get(other.metrics_url).status_code == 200
        assert client.get(target.control_url).json()["faults"] == {"unreachable": True}
        client.post(target.control_url + "/faults", json={"unreachable": False})
        assert httpx.get(target.metrics_url, timeout=5).status_code == 200  # the same port, listening again


def test_a_fault_set_through_the_instance_port_still_gets_its_answer(clock: ManualClock) -> None:
    with start_simulator("sglang", 1, clock=clock) as fleet:
        handle = fleet.instances[0]
        response = httpx.post(handle.base_url + "/control/faults", json={"unreachable": True}, timeout=5)
        assert response.status_code == 200
        assert refused(port_of(handle.endpoint))
        fleet.set_faults(handle.instance_id, unreachable=None)
        assert httpx.get(handle.metrics_url, timeout=5).status_code == 200


def test_garbage_page_http_error_and_slow_page(clock: ManualClock) -> None:
    with start_simulator("vllm", 1, clock=clock) as fleet:
        handle = fleet.instances[0]
        fleet.set_faults(handle.instance_id, garbage_page=True)
        garbage = httpx.get(handle.metrics_url, timeout=5)
        assert garbage.status_code == 200
        assert garbage.headers["content-type"].startswith("text/html")
        with pytest.raises(ValueError, match="invalid metric name"):
            list(text_string_to_metric_families(garbage.text))
        fleet.set_faults(handle.instance_id, garbage_page=None, http_error=503)
        assert httpx.get(handle.metrics_url, timeout=5).status_code == 503
        fleet.set_faults(handle.instance_id, http_error=None, scrape_delay_s=30)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(handle.metrics_url, timeout=0.3)
        assert httpx.get(handle.base_url + "/health", timeout=5).status_code == 200  # only /metrics is slow
    # leaving the block cancelled the handler still sleeping out its 30 s


def test_error_burst_raises_failure_counters_over_http(clock: ManualClock) -> None:
    with start_simulator("tgi", 1, clock=clock) as fleet, httpx.Client(timeout=5) as client:
        handle = fleet.instances[0]
        clock.advance(30)
        assert "tgi_request_failure_total" not in values(client.get(handle.metrics_url).text)
        client.post(handle.control_url + "/faults", json={"error_burst": 0.5}).raise_for_status()
        clock.advance(60)
        page = values(client.get(handle.metrics_url).text)
        assert page["tgi_request_failure_total"] > 0.3 * (page["tgi_request_count_total"] * 60 / 90)


def test_restart_and_apply_over_http(clock: ManualClock) -> None:
    with start_simulator("vllm", 1, clock=clock) as fleet, httpx.Client(timeout=5) as client:
        handle = fleet.instances[0]
        clock.advance(60)
        assert values(client.get(handle.metrics_url).text)["vllm:prompt_tokens_total"] > 0
        assert client.post(handle.base_url + "/control/restart").json()["restarts"] == 1
        assert values(client.get(handle.metrics_url).text)["vllm:prompt_tokens_total"] == 0
        body = {"changes": {"--kv-cache-dtype": "fp8", "--max-num-seqs": 512}, "env": {"VLLM_USE_V1": "1"}}
        state = client.post(handle.control_url + "/apply", json=body).json()
        assert state["flags"] == {"--kv-cache-dtype": "fp8", "--max-num-seqs": 512}
        assert state["restarts"] == 2
        assert 'cache_dtype="fp8"' in client.get(handle.metrics_url).text
        bad = client.post(handle.control_url + "/apply", json={"changes": {"--block-size": "big"}}).json()
        assert bad["state"] == "crashed"
        assert refused(port_of(handle.endpoint))  # a crashed server has no listener
        client.post(handle.control_url + "/apply", json={"changes": {"--block-size": None}}).raise_for_status()
        assert client.get(handle.metrics_url).status_code == 200


def test_single_port_serves_many_instances_under_their_paths(clock: ManualClock) -> None:
    specs = [
        SimulatedServerSpec(engine, f"{engine}-{i}", seed=i) for i in range(20) for engine in ("vllm", "tgi", "sglang")
    ]
    with SimulatedFleet(specs, single_port=True, clock=clock) as fleet, httpx.Client(timeout=5) as client:
        assert len({h.endpoint for h in fleet.instances}) == 1
        clock.advance(20)
        seen = set()
        for handle in fleet.instances:
            assert handle.metrics_path == f"/i/{handle.instance_id}/metrics"
            page = client.get(handle.metrics_url)
            assert page.status_code == 200
            seen.add(page.text)
        assert len(seen) == 60  # distinct seeds, distinct pages
        victim = fleet.instances[0]
        client.post(victim.control_url + "/faults", json={"unreachable": True}).raise_for_status()
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(victim.metrics_url, timeout=5)
        assert client.get(fleet.instances[1].metrics_url).status_code == 200
        missing = client.get(victim.endpoint + "/i/nobody/metrics")
        assert (missing.status_code, missing.json()["error"]) == (404, "unknown_instance")
        assert len(client.get(victim.endpoint + "/fleet").json()) == 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def simulate_process(*args: str) -> subprocess.Popen[str]:
    """`simulate` in a child process, as an operator runs it; its stdout lists the instances."""
    code = "import sys; from performance_agent.simulator.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_a_signal_and_exits_cleanly(signum: int) -> None:
    with simulate_process("--engine", "sglang", "--count", "2", "--time-scale", "5", "--seed", "7") as process:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[2].startswith("fleet listing:")
        url = lines[0].split()[2]
        assert url.endswith("/metrics")
        assert "sglang:num_running_reqs" in httpx.get(url, timeout=5).text
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in stderr
    assert refused(port_of(url))


def test_cli_reports_a_busy_port_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert main(["--engine", "tgi", "--base-port", str(port), "--single-port"]) == 1
    assert "cannot listen" in capsys.readouterr().err
    assert main(["--engine", "tgi", "--version", "0.10"]) == 2
    assert "no version '0.10'" in capsys.readouterr().err
    assert main(["--engine", "vllm", "--count", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["--engine", "triton"])


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET /fleet SPDY/3\r\n\r\n", b"400"),
        (b"POST /i/t/control/faults HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n", b"413"),
        (b"POST /i/t/control/faults HTTP/1.1\r\nContent-Length: -4\r\n\r\n", b"413"),
        (b"POST /i/t/control/faults HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"413"),
        (b"GET /x HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n", b"431"),
        (b"GET /nowhere HTTP/1.0\r\n\r\n", b"404"),
    ],
)
def test_malformed_requests_get_an_error_and_the_connection_closes(
    clock: ManualClock, request_bytes: bytes, status: bytes
) -> None:
    with SimulatedFleet([SimulatedServerSpec("tgi", "t")], single_port=True, clock=clock) as fleet:
        reply = raw_exchange(port_of(fleet.instances[0].endpoint), request_bytes)
    assert reply.split(b" ")[1] == status
    assert b"Connection: close" in reply


def test_http_1_0_gets_its_answer_then_the_connection_closes(clock: ManualClock) -> None:
    with SimulatedFleet([SimulatedServerSpec("vllm", "v")], clock=clock) as fleet:
        reply = raw_exchange(port_of(fleet.instances[0].endpoint), b"GET /metrics HTTP/1.0\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in head
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    assert b"vllm:num_requests_running" in body


def test_python_api_controls_match_the_http_ones(clock: ManualClock) -> None:
    specs = [SimulatedServerSpec("vllm", "v", flags={"max_num_seqs": 64}), SimulatedServerSpec("tgi", "t")]
    with SimulatedFleet(specs, clock=clock) as fleet:
        assert fleet.state("v")["flags"] == {"--max-num-seqs": 64}
        assert fleet.set_config("v", {"--max-num-seqs": 32})["derived"]["max_running"] == 32  # type: ignore[index]
        assert fleet.set_load("t", arrival_rate_per_s=1.5)["load"]["arrival_rate_per_s"] == 1.5  # type: ignore[index]
        clock.advance(20)
        assert values(fleet.metrics_text("t"))["tgi_request_count_total"] > 0
        assert fleet.restart("t")["restarts"] == 1
        assert "tgi_request_count" not in fleet.metrics_text("t")
        state = fleet.apply("t", {"--max-concurrent-requests": 8}, {"PREFIX_CACHING": "0"})
        assert (state["flags"], state["env"]) == ({"--max-concurrent-requests": 8}, {"PREFIX_CACHING": "0"})
        with pytest.raises(KeyError):
            fleet.state("nobody")
    with pytest.raises(RuntimeError, match="not running"):
        fleet.state("v")


def test_fleet_refuses_bad_specs_and_busy_ports(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="unique"):
        SimulatedFleet([SimulatedServerSpec("tgi", "a"), SimulatedServerSpec("vllm", "a")])
    with pytest.raises(ValueError, match="count"):
        start_simulator("tgi", 0)
    threads_before = threading.active_count()
    port = _free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(OSError, match="in use"):
            start_simulator("sglang", 2, base_port=port, clock=clock)
    assert threading.active_count() == threads_before


def test_latency_shape_over_http_and_from_python(clock: ManualClock) -> None:
    with (
        start_simulator("vllm", 2, clock=clock, latency_shape="heavy-tailed") as fleet,
        httpx.Client(timeout=5) as client,
    ):
        first, second = fleet.instances
        shape = client.get(first.control_url + "/shape").json()
        assert (shape["preset"], shape["sigma"], shape["slow_share"], shape["slow_factor"]) == (
            "heavy-tailed", 0.5, 0.07, 6.0
        )  # fmt: skip
        assert (shape["seed"], client.get(second.control_url + "/shape").json()["seed"]) == (0, 1)
        changed = client.post(second.base_url + "/control/shape", json={"slow_factor": 4, "seed": 5})
        assert changed.status_code == 200
        assert changed.json()["latency_shape"]["slow_factor"] == 4.0
        refused_body = client.post(first.control_url + "/shape", json={"slow_share": 2})
        assert refused_body.status_code == 422
        assert refused_body.json() == {
            "error": "invalid_shape", "message": "slow_share must be within [0.0, 1.0], got 2"
        }  # fmt: skip
        assert fleet.set_shape(first.instance_id, preset="none")["latency_shape"]["preset"] == "none"  # type: ignore[index]
        clock.advance(60)
        assert values(client.get(first.metrics_url).text)["vllm:time_to_first_token_seconds_count"] > 0
    with pytest.raises(ValueError, match="unknown latency shape 'spiky'; choose from none, heavy-tailed"):
        start_simulator("vllm", 1, clock=clock, latency_shape="spiky")


def test_cli_starts_servers_with_a_latency_shape() -> None:
    args = ["--engine", "vllm", "--latency-shape", "heavy-tailed", "--slow-factor", "4", "--seed", "3"]
    with simulate_process(*args) as process:
        assert process.stdout is not None
        control_url = process.stdout.readline().split("control: ")[1].strip()
        shape = httpx.get(control_url + "/shape", timeout=5).json()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert (shape["sigma"], shape["slow_share"], shape["slow_factor"], shape["seed"]) == (0.5, 0.07, 4.0, 3)
    assert shape["preset"] is None  # a preset with an override is a custom shape
