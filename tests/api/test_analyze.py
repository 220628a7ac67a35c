"""`POST /api/v1/analyze`: findings from stored history, the SLO report, and every error path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.builder import aggregate_window
from performance_agent.metrics.goodput import goodput_targets
from performance_agent.simulator import start_simulator
from tests.api.analysis_support import register, seed_history, simulated
from tests.conftest import KEYS, OPERATOR_KEY, VIEWER_KEY, ClientFactory, assert_envelope

RESPONSE_FIELDS = {"instance_id", "engine", "analyzed_at", "window", "bottlenecks", "slo", "summary"}


@pytest.fixture
def api(client_factory: ClientFactory) -> TestClient[Litestar]:
    return client_factory(scrape_background=False, slo_defaults=["itl_p99_s=0.2", "target_ratio=0.95"])


def analyze(client: TestClient[Litestar], **body: Any) -> Any:
    return client.post("/api/v1/analyze", json=body)


def test_kv_pressure_is_found_with_evidence_from_summed_deltas(api: TestClient[Litestar]) -> None:
    register(api, "vllm-0")
    server, clock = simulated("vllm", faults={"kv_pressure": 0.8})
    raws = seed_history(api, "vllm-0", server, clock, scrapes=41)

    response = analyze(api, instance_id="vllm-0")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == RESPONSE_FIELDS
    assert body["engine"] == "vllm"
    window = body["window"]
    assert window["source"] == "history"
    assert window["scrapes"] == 41
    assert window["duration_s"] == pytest.approx(600.0)
    assert window["collected_now"] is False
    # Quantiles and rates are those of the summed deltas, not means of per-scrape percentiles.
    expected = aggregate_window(raws)
    assert window["figures"]["latency"]["ttft_s"]["p99"] == pytest.approx(expected.latency.ttft_s.p99)
    assert window["figures"]["throughput"]["generation_tokens_per_s"] == pytest.approx(
        expected.throughput.generation_tokens_per_s
    )
    kv = next(f for f in body["bottlenecks"] if f["type"] == "kv_cache_pressure")
    assert kv["severity"] in ("medium", "high", "critical")
    usage = kv["evidence"]["load.kv_cache_usage"]
    assert usage["observed"] >= usage["threshold"] >= 0.9
    assert "kv_cache_pressure" in body["summary"]
    assert body["slo"]["targets_source"] == "defaults"
    assert body["slo"]["targets"]["itl_p99_s"] == 0.2  # from PERF_AGENT_SLO_DEFAULTS
    assert body["slo"]["target_ratio"] == 0.95


def test_a_healthy_instance_has_no_finding_above_low_and_meets_its_slo(api: TestClient[Litestar]) -> None:
    register(api, "sglang-0", engine="sglang", slo={"ttft_p99_s": 1.0, "itl_p99_s": 0.09})
    server, clock = simulated("sglang")
    seed_history(api, "sglang-0", server, clock, scrapes=21)

    body = analyze(api, instance_id="sglang-0", window_minutes=10).json()
    assert [f for f in body["bottlenecks"] if f["severity"] != "low"] == []
    assert body["summary"].startswith("healthy")
    assert body["slo"]["targets_source"] == "instance"
    objectives = {o["objective"]: o for o in body["slo"]["objectives"]}
    assert objectives["ttft_p99_s"]["target"] == 1.0
    assert objectives["ttft_p99_s"]["compliance"] == 1.0
    assert objectives["ttft_p99_s"]["good_windows"] == 20  # the first scrape's lifetime window starts before it
    assert objectives["error_rate"]["current"] == 0.0


def test_slo_in_the_request_overrides_for_this_analysis_only(api: TestClient[Litestar]) -> None:
    register(api, "vllm-0", slo={"ttft_p99_s": 5.0})
    server, clock = simulated("vllm")
    seed_history(api, "vllm-0", server, clock)

    body = analyze(api, instance_id="vllm-0", slo={"ttft_p99_s": 0.001}).json()
    assert body["slo"]["targets_source"] == "request"
    objectives = {o["objective"]: o for o in body["slo"]["objectives"]}
    assert objectives["ttft_p99_s"]["target"] == 0.001
    assert objectives["ttft_p99_s"]["compliance"] == 0.0
    assert objectives["ttft_p99_s"]["bad_windows"] > 0
    assert api.get("/api/v1/instances/vllm-0").json()["slo"]["ttft_p99_s"] == 5.0


def test_goodput_of_the_window_is_measured_against_the_effective_targets(api: TestClient[Litestar]) -> None:
    register(api, "vllm-0", slo={"ttft_p99_s": 1.0, "e2e_p99_s": 20.0})
    server, clock = simulated("vllm")
    raws = seed_history(api, "vllm-0", server, clock)

    body = analyze(api, instance_id="vllm-0").json()
    targets = SloTargets(ttft_p99_s=1.0, e2e_p99_s=20.0, itl_p99_s=0.2, target_ratio=0.95)
    expected = aggregate_window(raws, goodput_targets=goodput_targets(targets)).goodput
    assert expected is not None
    assert expected.share is not None
    assert 0.0 < expected.share <= 1.0
    goodput = body["window"]["figures"]["goodput"]
    assert goodput["share"] == pytest.approx(expected.share)
    assert [t["objective"] for t in goodput["targets"]] == ["ttft_p99_s", "e2e_p99_s", "itl_p99_s"]
    assert goodput["targets"][2]["per_token"] is True
    assert body["slo"]["goodput"] == goodput  # the SLO report shows the same window's goodput

    # A request override moves the limit goodput is measured against.
    strict = analyze(api, instance_id="vllm-0", slo={"ttft_p99_s": 0.001}).json()
    ttft = strict["window"]["figures"]["goodput"]["targets"][0]
    assert ttft["limit_s"] == 0.001
    assert ttft["share"] == 0.0
    assert strict["slo"]["goodput"]["share"] == 0.0


def test_an_instance_without_history_is_collected_once_first(client_factory: ClientFactory) -> None:
    client = client_factory(scrape_background=False)
    with start_simulator("vllm", 1) as fleet:
        handle = fleet.instances[0]
        registration = {"instance_id": "live-0", "engine": "vllm", "endpoint": handle.endpoint}
        assert client.post("/api/v1/instances", json=registration).status_code == 201
        response = analyze(client, instance_id="live-0")
    assert response.status_code == 200, response.text
    window = response.json()["window"]
    assert window["collected_now"] is True
    assert window["source"] == "single_scrape"  # figures over the lifetime, from the counting start on the page
    assert window["start"] is not None
    assert window["scrapes"] == 1
    assert client.get("/api/v1/history/live-0").json()[0]["instance_id"] == "live-0"


def test_model_name_selects_one_model(api: TestClient[Litestar]) -> None:
    register(api, "vllm-0")
    server, clock = simulated("vllm")
    seed_history(api, "vllm-0", server, clock)
    model = server.state()["model"]

    body = analyze(api, instance_id="vllm-0", model_name=model).json()
    assert body["window"]["model_name"] == model
    assert body["window"]["figures"]["throughput"]["requests_per_s"] > 0

    missing = analyze(api, instance_id="vllm-0", model_name="no-such-model")
    envelope = assert_envelope(missing, 409, "insufficient_data")
    assert envelope["context"]["available_models"] == [model]


def test_unknown_instance_is_404(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(analyze(api, instance_id="nobody"), 404, "not_found")
    assert envelope["context"] == {"instance_id": "nobody"}


def test_no_history_and_an_unreachable_server_is_409_insufficient_data(api: TestClient[Litestar]) -> None:
    register(api, "dark-0")
    envelope = assert_envelope(analyze(api, instance_id="dark-0"), 409, "insufficient_data")
    assert envelope["context"]["scrape_error"] == "upstream_unreachable"
    assert envelope["context"]["scrapes_in_window"] == 0


def test_history_outside_the_window_is_409_insufficient_data(api: TestClient[Litestar]) -> None:
    register(api, "old-0")
    server, clock = simulated("vllm")
    seed_history(api, "old-0", server, clock, scrapes=5, end=datetime.now(UTC) - timedelta(hours=2))

    envelope = assert_envelope(analyze(api, instance_id="old-0", window_minutes=30), 409, "insufficient_data")
    assert envelope["context"] == {"instance_id": "old-0", "window_minutes": 30, "scrapes_in_window": 0}
    assert analyze(api, instance_id="old-0", window_minutes=180).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instance_id": "vllm-0", "window_minutes": 0}, "body.window_minutes"),
        ({"instance_id": "vllm-0", "window_minutes": "15"}, "body.window_minutes"),
        ({"instance_id": "vllm-0", "window_minutes": 7 * 24 * 60 + 1}, "body.window_minutes"),
        ({"instance_id": "vllm-0", "slo": {"ttft_p99_s": -1}}, "body.slo.ttft_p99_s"),
        ({"instance_id": "vllm-0", "slo": {"error_rate": 1.5}}, "body.slo.error_rate"),
        ({"instance_id": "vllm-0", "slo": {"target_ratio": 0}}, "body.slo.target_ratio"),
        ({"instance_id": "vllm-0", "slo": {"ttft_p99": 1}}, "body.slo.ttft_p99"),
        ({"instance_id": "vllm-0", "model_name": ""}, "body.model_name"),
        ({"instance_id": "bad id!"}, "body.instance_id"),
        ({"instance_id": "vllm-0", "extra": 1}, "body.extra"),
        ({}, "body.instance_id"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(api: TestClient[Litestar], body: dict[str, Any], field: str) -> None:
    envelope = assert_envelope(api.post("/api/v1/analyze", json=body), 422, "validation_error")
    assert field in envelope["invalid_fields"], envelope


def test_malformed_json_is_400(api: TestClient[Litestar]) -> None:
    response = api.post("/api/v1/analyze", content=b"{", headers={"Content-Type": "application/json"})
    assert_envelope(response, 400, "invalid_json")


def test_analyze_needs_the_operator_role(client_factory: ClientFactory) -> None:
    client = client_factory(api_keys=KEYS, scrape_background=False)
    body = {"instance_id": "nobody"}
    assert_envelope(client.post("/api/v1/analyze", json=body), 401, "unauthorized")
    assert_envelope(client.post("/api/v1/analyze", json=body, headers={"X-API-Key": VIEWER_KEY}), 403, "forbidden")
    answer = client.post("/api/v1/analyze", json=body, headers={"X-API-Key": OPERATOR_KEY})
    assert_envelope(answer, 404, "not_found")
