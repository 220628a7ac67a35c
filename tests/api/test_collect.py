"""`POST /collect/{engine}` against real HTTP servers: values, every failure path, and the guard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from performance_agent.context import AgentContext
from performance_agent.outbound.target_guard import ResolutionError, Resolver
from tests.conftest import KEYS, OPERATOR_KEY, VIEWER_KEY, ClientFactory, assert_envelope
from tests.scrape_support import ScriptedServer, fixture_page, scripted_server

__all__ = ("scripted_server",)

SGLANG_PAGE = fixture_page("sglang-docs-2024-llama31-8b-loaded.prom")
TGI_PAGE = b"# TYPE tgi_request_count counter\ntgi_request_count 1\n"


@pytest.fixture
def api(client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> TestClient[Litestar]:
    monkeypatch.setenv("SCRAPE_TOKEN", "s3cr3t-token-value")
    return client_factory(scrape_background=False, scrape_header_env=["SCRAPE_TOKEN", "UNSET_TOKEN"])


def collect(client: TestClient[Litestar], engine: str, server: ScriptedServer, **fields: Any) -> Any:
    payload = {"instance_id": "inst-0", "endpoint": server.endpoint, **fields}
    return client.post(f"/api/v1/collect/{engine}", json=payload)


def instance(client: TestClient[Litestar], instance_id: str = "inst-0") -> dict[str, Any]:
    response = client.get(f"/api/v1/instances/{instance_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def history(client: TestClient[Litestar], instance_id: str = "inst-0") -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/history/{instance_id}")
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def context_of(client: TestClient[Litestar]) -> AgentContext:
    context: AgentContext = client.app.state.context
    return context


def test_a_scrape_returns_stores_and_registers_the_snapshot(
    api: TestClient[Litestar], scripted_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", SGLANG_PAGE)
    response = collect(api, "sglang", scripted_server)
    assert response.status_code == 200, response.text
    snapshot = response.json()
    assert (snapshot["instance_id"], snapshot["engine"], snapshot["endpoint"]) == (
        "inst-0",
        "sglang",
        scripted_server.endpoint,
    )
    assert snapshot["model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert snapshot["window_s"] is None
    assert snapshot["load"]["requests_running"] == 162.0
    assert snapshot["load"]["requests_waiting"] == 2826.0
    assert snapshot["load"]["kv_cache_usage"] == 0.28
    assert snapshot["latency"]["ttft_s"]["count"] == 11008.0
    assert snapshot["latency"]["ttft_s"]["mean"] == pytest.approx(2.3518979474117756e06 / 11008.0)
    assert history(api) == [snapshot]
    registered = instance(api)
    assert (registered["engine"], registered["status"], registered["last_error"]) == ("sglang", "up", None)
    assert registered["last_seen"] is not None
    assert registered["endpoint"] == scripted_server.endpoint


def test_the_second_scrape_covers_the_window_since_the_first(
    api: TestClient[Litestar], scripted_server: ScriptedServer
) -> None:
    def page(finished: int, failed: int) -> bytes:
        return (
            "# TYPE vllm:request_success counter\n"
            f'vllm:request_success_total{{finished_reason="stop",model_name="m"}} {finished}\n'
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="m"}} {finished % 7}\n'
        ).encode()

    scripted_server.serve("/metrics", page(100, 0))
    first = collect(api, "vllm", scripted_server).json()
    scripted_server.serve("/metrics", page(160, 0))
    second = collect(api, "vllm", scripted_server).json()
    assert first["window_s"] is None
    assert first["throughput"]["requests_per_s"] is None  # no start time on the page: lifetime rate unknown
    assert second["window_s"] > 0
    assert second["throughput"]["requests_per_s"] == pytest.approx(60 / second["window_s"])
    assert second["load"]["requests_running"] == 160 % 7
    assert [item["collected_at"] for item in history(api)] == [second["collected_at"], first["collected_at"]]


def test_omitted_fields_keep_the_registration(api: TestClient[Litestar], scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/i/a/metrics", SGLANG_PAGE)
    registration = {
        "instance_id": "inst-0",
        "engine": "sglang",
        "endpoint": scripted_server.endpoint,
        "metrics_path": "/i/a/metrics",
        "labels": {"team": "search"},
        "headers": {"Authorization": {"env": "SCRAPE_TOKEN", "prefix": "Bearer "}},
    }
    assert api.post("/api/v1/instances", json=registration).status_code == 201
    response = collect(api, "sglang", scripted_server)
    assert response.status_code == 200, response.text
    assert scripted_server.requests[-1]["path"] == "/i/a/metrics"
    assert scripted_server.header_of(-1, "Authorization") == "Bearer s3cr3t-token-value"
    kept = instance(api)
    assert kept["labels"] == {"team": "search"}
    assert kept["headers"] == {"Authorization": {"env": "SCRAPE_TOKEN", "prefix": "Bearer "}}
    assert "s3cr3t" not in response.text
    assert "s3cr3t" not in api.get("/api/v1/instances").text


def test_literal_headers_are_sent_but_never_shown(api: TestClient[Litestar], scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", SGLANG_PAGE)
    response = collect(api, "sglang", scripted_server, headers={"X-Api-Token": "literal-secret"})
    assert response.status_code == 200
    assert scripted_server.header_of(0, "X-Api-Token") == "literal-secret"
    assert instance(api)["headers"] == {"X-Api-Token": "REDACTED"}


def test_an_unset_environment_variable_is_a_422_scrape_config_invalid(
    api: TestClient[Litestar], scripted_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", SGLANG_PAGE)
    response = collect(api, "sglang", scripted_server, headers={"Authorization": {"env": "UNSET_TOKEN"}})
    envelope = assert_envelope(response, 422, "scrape_config_invalid")
    assert "UNSET_TOKEN" in envelope["message"]
    assert scripted_server.requests == []
    assert instance(api)["last_error"]["code"] == "scrape_config_invalid"


def failure_recorded(client: TestClient[Litestar], code: str) -> dict[str, Any]:
    """A failed scrape stored no snapshot but left the instance down with its error."""
    registered = instance(client)
    assert registered["status"] == "down"
    assert registered["last_error"]["code"] == code
    assert registered["consecutive_failures"] == 1
    assert history(client) == []
    last_error: dict[str, Any] = registered["last_error"]
    return last_error


def test_an_unreachable_server_is_a_502(api: TestClient[Litestar]) -> None:
    response = api.post("/api/v1/collect/vllm", json={"instance_id": "inst-0", "endpoint": "http://127.0.0.1:1"})
    assert_envelope(response, 502, "upstream_unreachable")
    failure_recorded(api, "upstream_unreachable")


def test_a_silent_server_is_a_504(api: TestClient[Litestar], scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", stall=True)
    envelope = assert_envelope(collect(api, "vllm", scripted_server, timeout_s=0.3), 504, "upstream_timeout")
    assert envelope["message"] == "no complete answer within 0.3 s"
    failure_recorded(api, "upstream_timeout")


def test_a_non_2xx_answer_is_a_502_with_the_upstream_status(
    api: TestClient[Litestar], scripted_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", b"busy", status=503)
    envelope = assert_envelope(collect(api, "vllm", scripted_server), 502, "upstream_error")
    assert envelope["context"] == {"upstream_status": 503}
    assert failure_recorded(api, "upstream_error")["upstream_status"] == 503


def test_a_redirect_is_not_followed(api: TestClient[Litestar], scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", status=307, headers={"Location": "http://169.254.169.254/"})
    envelope = assert_envelope(collect(api, "vllm", scripted_server), 502, "upstream_error")
    assert envelope["context"] == {"upstream_status": 307}
    assert len(scripted_server.requests) == 1


@pytest.mark.parametrize(
    ("page", "fragment"),
    [
        (b"<html><body>502 Bad Gateway</body></html>\n", "line 1"),
        (b'vllm:num_requests_running 1\nvllm:num_requests_waiting{model_name="m" 2\n', "line 2"),
        (b"# just a comment\n", "no samples"),
    ],
)
def test_an_unparsable_page_is_a_502_upstream_invalid_metrics(
    api: TestClient[Litestar], scripted_server: ScriptedServer, page: bytes, fragment: str
) -> None:
    scripted_server.serve("/metrics", page)
    envelope = assert_envelope(collect(api, "vllm", scripted_server), 502, "upstream_invalid_metrics")
    assert fragment in envelope["message"]
    failure_recorded(api, "upstream_invalid_metrics")


def test_a_page_over_the_size_limit_is_refused(client_factory: ClientFactory, scripted_server: ScriptedServer) -> None:
    small = client_factory(scrape_background=False, scrape_max_bytes=1024)
    scripted_server.serve("/metrics", SGLANG_PAGE)
    envelope = assert_envelope(collect(small, "sglang", scripted_server), 502, "upstream_invalid_metrics")
    assert "PERF_AGENT_SCRAPE_MAX_BYTES (1024)" in envelope["message"]


def test_a_page_of_another_engine_is_a_422_naming_it(
    api: TestClient[Litestar], scripted_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", TGI_PAGE)
    envelope = assert_envelope(collect(api, "vllm", scripted_server), 422, "engine_mismatch")
    assert envelope["context"] == {"detected_engine": "tgi", "expected_engine": "vllm"}
    assert "found a tgi page" in envelope["message"]
    failure_recorded(api, "engine_mismatch")


def test_a_page_of_no_known_engine_is_an_engine_mismatch(
    api: TestClient[Litestar], scripted_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", b"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.5\n")
    envelope = assert_envelope(collect(api, "tgi", scripted_server), 422, "engine_mismatch")
    assert envelope["context"] == {"detected_engine": None, "expected_engine": "tgi"}


def test_an_instance_registered_under_another_engine_is_a_422(
    api: TestClient[Litestar], scripted_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", SGLANG_PAGE)
    assert collect(api, "sglang", scripted_server).status_code == 200
    envelope = assert_envelope(collect(api, "vllm", scripted_server), 422, "engine_mismatch")
    assert envelope["context"] == {"registered_engine": "sglang", "requested_engine": "vllm"}
    assert len(scripted_server.requests) == 1  # refused before scraping
    assert instance(api)["status"] == "up"


TARGET = {"instance_id": "a", "endpoint": "http://127.0.0.1:1"}
VLLM = "/api/v1/collect/vllm"


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/api/v1/collect/triton", TARGET, "path.engine"),
        (VLLM, {**TARGET, "instance_id": "a b"}, "body.instance_id"),
        (VLLM, {**TARGET, "timeout_s": 0}, "body.timeout_s"),
        (VLLM, {**TARGET, "timeout_s": 61}, "body.timeout_s"),
        (VLLM, {**TARGET, "timeout_s": "5"}, "body.timeout_s"),
        (VLLM, {"instance_id": "a"}, "body.endpoint"),
        (VLLM, {**TARGET, "labels": {}}, "body.labels"),
        (VLLM, {**TARGET, "tls_verify": "no"}, "body.tls_verify"),
    ],
)
def test_invalid_requests_are_422(api: TestClient[Litestar], path: str, payload: dict[str, Any], field: str) -> None:
    envelope = assert_envelope(api.post(path, json=payload), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]
    assert api.get("/api/v1/instances").json() == []


# --------------------------------------------------------------------------- the guard


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254",
        "http://2852039166",
        "http://0xA9FEA9FE",
        "http://[::ffff:169.254.169.254]",
        "http://[fe80::1]",
        "http://[fd00:ec2::254]",
        "http://metadata.google.internal",
        "http://10.1.2.3:8000",
        "file:///etc/passwd",
    ],
)
def test_forbidden_targets_are_a_403_and_register_nothing(api: TestClient[Litestar], endpoint: str) -> None:
    response = api.post("/api/v1/collect/vllm", json={"instance_id": "inst-0", "endpoint": endpoint})
    assert_envelope(response, 403, "target_not_allowed")
    assert api.get("/api/v1/instances").json() == []


def test_a_host_name_resolving_to_metadata_is_refused_at_scrape_time(client_factory: ClientFactory) -> None:
    async def rebinding(host: str, port: int) -> Sequence[str]:
        if host == "innocent.internal":
            return ["169.254.169.254"]
        raise ResolutionError(f"{host} does not resolve")

    api = allowing_internal_names(client_factory, rebinding)
    response = api.post(
        "/api/v1/collect/vllm", json={"instance_id": "inst-0", "endpoint": "http://innocent.internal:8000"}
    )
    envelope = assert_envelope(response, 403, "target_not_allowed")
    assert "innocent.internal resolves to 169.254.169.254" in envelope["message"]
    assert failure_recorded(api, "target_not_allowed")["message"] == envelope["message"]
    unknown = api.post("/api/v1/collect/vllm", json={"instance_id": "inst-1", "endpoint": "http://nowhere.internal"})
    assert_envelope(unknown, 502, "upstream_unreachable")


def allowing_internal_names(client_factory: ClientFactory, resolver: Resolver) -> TestClient[Litestar]:
    """An agent allowing `*.internal` by name (as an operator would), so only the resolved address can refuse."""
    return client_factory(scrape_background=False, scrape_allowlist=["127.0.0.1/32", "*.internal"], resolver=resolver)


def test_a_host_name_resolving_to_an_allowed_address_is_scraped_there(
    client_factory: ClientFactory, scripted_server: ScriptedServer
) -> None:
    async def resolver(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"] if host == "sglang-0.internal" else []

    api = allowing_internal_names(client_factory, resolver)
    scripted_server.serve("/metrics", SGLANG_PAGE)
    response = api.post(
        "/api/v1/collect/sglang",
        json={"instance_id": "inst-0", "endpoint": f"http://sglang-0.internal:{scripted_server.port}"},
    )
    assert response.status_code == 200, response.text
    assert scripted_server.header_of(0, "Host") == f"sglang-0.internal:{scripted_server.port}"


def test_collect_needs_the_operator_role(client_factory: ClientFactory, scripted_server: ScriptedServer) -> None:
    secured = client_factory(api_keys=KEYS, scrape_background=False)
    scripted_server.serve("/metrics", SGLANG_PAGE)
    payload = {"instance_id": "inst-0", "endpoint": scripted_server.endpoint}
    viewer = secured.post("/api/v1/collect/sglang", json=payload, headers={"X-API-Key": VIEWER_KEY})
    assert_envelope(viewer, 403, "forbidden")
    assert scripted_server.requests == []
    operator = secured.post("/api/v1/collect/sglang", json=payload, headers={"X-API-Key": OPERATOR_KEY})
    assert operator.status_code == 200


def test_scrapes_are_counted_on_the_agents_metrics(api: TestClient[Litestar], scripted_server: ScriptedServer) -> None:
    def sample(text: str, prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    failures = 'performance_agent_scrape_failures_total{engine="vllm",reason="upstream_error"}'
    durations = 'performance_agent_scrape_duration_seconds_count{engine="sglang",outcome="ok"}'
    before = api.get("/metrics").text
    scripted_server.serve("/metrics", SGLANG_PAGE)
    assert collect(api, "sglang", scripted_server, instance_id="ok-0").status_code == 200
    scripted_server.serve("/bad", status=500)
    assert collect(api, "vllm", scripted_server, instance_id="bad-0", metrics_path="/bad").status_code == 502
    after = api.get("/metrics").text
    assert sample(after, failures) == sample(before, failures) + 1
    assert sample(after, durations) == sample(before, durations) + 1


def test_a_snapshot_carries_goodput_against_the_instance_s_own_targets(
    api: TestClient[Litestar], scripted_server: ScriptedServer
) -> None:
    scripted_server.serve("/metrics", SGLANG_PAGE)
    without = collect(api, "sglang", scripted_server).json()
    assert without["goodput"] is None  # no SLO targets registered
    registered = api.post(
        "/api/v1/instances",
        json={
            "instance_id": "inst-1",
            "engine": "sglang",
            "endpoint": scripted_server.endpoint,
            "slo": {"ttft_p99_s": 2.5, "e2e_p99_s": 30.0},
        },
    )
    assert registered.status_code == 201, registered.text
    with_targets = collect(api, "sglang", scripted_server, instance_id="inst-1")
    assert with_targets.status_code == 200, with_targets.text
    goodput = with_targets.json()["goodput"]
    targets = {t["objective"]: t for t in goodput["targets"]}
    assert targets["ttft_p99_s"]["limit_s"] == 2.5
    assert targets["ttft_p99_s"]["observations"] == 11008.0
    assert targets["ttft_p99_s"]["share"] <= targets["ttft_p99_s"]["share_upper"]
    request_level = [t["share"] for t in goodput["targets"] if not t["per_token"]]
    assert goodput["share"] == pytest.approx(max(0.0, 1.0 - sum(1.0 - share for share in request_level)))
