"""Instances read through a Prometheus-compatible API: registration rules, readings equal to a scrape, every failure.

The Prometheus here is a small fake on 127.0.0.1 (tests/prometheus_fake.py) holding the samples
a real Prometheus would have stored from scraping a recorded vLLM page; the agent talks to it
over real sockets through the same guard and clients as a scrape.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ClientFactory, assert_envelope
from tests.prometheus_fake import Failure, FakePrometheus, fake_prometheus, vector_of_page
from tests.scrape_support import ScriptedServer, fixture_page, scripted_server

__all__ = ("fake_prometheus", "scripted_server")

#: Has `vllm:cache_config_info`, whose labels become the engine config: Prometheus's labels must not join them.
PAGE = fixture_page("vllm-aibrix-runtime-docs-v0.7.prom")
MATCH = '{namespace="llm",pod="vllm-0"}'
TARGET = {"job": "vllm", "instance": "10.0.0.5:8000", "namespace": "llm", "pod": "vllm-0"}


@pytest.fixture
def api(
    client_factory: ClientFactory, fake_prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> TestClient[Litestar]:
    monkeypatch.setenv("MIMIR_TENANT", "team-llm")
    fake_prometheus.series = vector_of_page(PAGE.decode(), TARGET)
    return client_factory(
        scrape_background=False,
        prometheus_url=fake_prometheus.url + "/prometheus",
        prometheus_headers_env=["X-Scope-OrgID=MIMIR_TENANT"],
    )


def register(client: TestClient[Litestar], **fields: Any) -> Any:
    body = {"instance_id": "vllm-0", "engine": "vllm", "source": "prometheus", "match": MATCH, **fields}
    return client.post("/api/v1/instances", json=body)


def collect(client: TestClient[Litestar], instance_id: str = "vllm-0") -> Any:
    return client.post("/api/v1/collect/vllm", json={"instance_id": instance_id})


def test_an_instance_registers_with_source_and_match_and_no_endpoint(api: TestClient[Litestar]) -> None:
    response = register(api)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["source"], body["match"], body["endpoint"], body["discovered"], body["gone"]) == (
        "prometheus",
        MATCH,
        None,
        False,
        False,
    )
    assert [i["instance_id"] for i in api.get("/api/v1/instances?source=prometheus").json()] == ["vllm-0"]
    assert api.get("/api/v1/instances?source=scrape").json() == []
    assert_envelope(api.get("/api/v1/instances?source=push"), 422, "validation_error")


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"match": None}, "body.match", "required with source prometheus"),
        ({"match": "namespace=llm"}, "body.match", 'starts with "{"'),
        ({"match": "{}"}, "body.match", "at least one label matcher"),
        ({"match": '{pod=""}'}, "body.match", "empty string"),
        ({"match": '{__name__="vllm:x"}'}, "body.match", "__name__"),
        ({"match": '{pod=~"("}'}, "body.match", "regular expression"),
        ({"match": '{pod="a" job="b"}'}, "body.match", 'expected ","'),
        ({"headers": {"X-Token": "abc"}}, "body.headers", "PERF_AGENT_PROMETHEUS_HEADERS_ENV"),
        ({"source": "scrape"}, "body.endpoint", "required with source scrape"),
        ({"source": "scrape", "endpoint": "http://127.0.0.1:9"}, "body.match", "only used with source prometheus"),
    ],
)
def test_registration_refuses_what_cannot_select_one_server(
    api: TestClient[Litestar], fields: dict[str, Any], field: str, fragment: str
) -> None:
    envelope = assert_envelope(register(api, **fields), 422, "validation_error")
    detail = next(d for d in envelope["details"] if d["field"] == field)
    assert fragment in detail["message"], envelope


def test_collect_reads_through_prometheus_the_same_snapshot_a_scrape_reads(
    api: TestClient[Litestar], fake_prometheus: FakePrometheus, scripted_server: ScriptedServer
) -> None:
    assert register(api).status_code == 201
    through_prometheus = collect(api)
    assert through_prometheus.status_code == 200, through_prometheus.text
    scripted_server.serve("/metrics", PAGE)
    direct = api.post("/api/v1/collect/vllm", json={"instance_id": "direct", "endpoint": scripted_server.endpoint})
    assert direct.status_code == 200, direct.text
    read, scraped = through_prometheus.json(), direct.json()
    for part in ("load", "latency", "throughput", "errors", "models", "model_name", "engine_config", "engine_version"):
        assert read[part] == scraped[part], part
    assert read["load"]["kv_cache_usage"] is not None
    assert read["engine_config"], "the cache_config_info labels reach the adapter without Prometheus's labels"
    assert read["endpoint"] == f"prometheus {MATCH}"
    requested_at = float(fake_prometheus.requests[0]["form"]["time"][0])
    # Dated by the scrape the readings come from, as a direct scrape is by its fetch.
    assert datetime.fromisoformat(read["collected_at"]).timestamp() == pytest.approx(requested_at - 0.25, abs=1e-3)
    (request,) = fake_prometheus.requests
    assert request["path"] == "/prometheus/api/v1/query"
    assert request["headers"]["X-Scope-OrgID"] == "team-llm"
    query = request["form"]["query"][0]
    assert query.startswith('{__name__=~"up|(?:process_start_time_seconds|vllm:')
    assert query.endswith(',namespace="llm",pod="vllm-0"}), "perf_agent_reading", "scraped_at", "", ".*")')
    assert "vllm:time_to_first_token_seconds" in query
    instance = api.get("/api/v1/instances/vllm-0").json()
    assert instance["status"] == "up"
    assert "team-llm" not in json.dumps(api.get("/api/v1/config").json())


def test_the_second_reading_covers_a_window(api: TestClient[Litestar], fake_prometheus: FakePrometheus) -> None:
    assert register(api).status_code == 201
    assert collect(api).status_code == 200
    fake_prometheus.series = [
        (labels, value + 10 if labels["__name__"].endswith(("_count", "_total", "_bucket")) else value)
        for labels, value in fake_prometheus.series
    ]
    second = collect(api).json()
    assert second["window_s"] is not None
    assert second["throughput"]["generation_tokens_per_s"] == pytest.approx(10 / second["window_s"])


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"status": "error", "errorType": error_type, "error": message}).encode()


@pytest.mark.parametrize(
    ("failure", "status", "code", "fragment"),
    [
        (Failure(400, _error("bad_data", "parse error at char 3")), 502, "upstream_error", "parse error at char 3"),
        (Failure(422, _error("execution", "too many samples")), 502, "upstream_error", "too many samples"),
        (Failure(503, _error("timeout", "query timed out in expression evaluation")), 504, "upstream_timeout", "timed"),
        (Failure(500, b"oops"), 502, "upstream_error", "HTTP 500"),
        (Failure(302, b""), 502, "upstream_error", "redirects are not followed"),
        (Failure(200, b"<html>"), 502, "upstream_error", "not a Prometheus API answer"),
        (Failure(stall=True), 504, "upstream_timeout", "within"),
    ],
)
def test_prometheus_failures_map_to_the_upstream_codes(
    client_factory: ClientFactory,
    fake_prometheus: FakePrometheus,
    failure: Failure,
    status: int,
    code: str,
    fragment: str,
) -> None:
    client = client_factory(scrape_background=False, scrape_timeout_s=0.5, prometheus_url=fake_prometheus.url)
    assert register(client).status_code == 201
    fake_prometheus.failure = failure
    envelope = assert_envelope(collect(client), status, code)
    assert fragment in envelope["message"], envelope
    instance = client.get("/api/v1/instances/vllm-0").json()
    assert (instance["status"], instance["last_error"]["code"]) == ("down", code)


def test_no_series_names_the_match(api: TestClient[Litestar]) -> None:
    assert register(api, match='{namespace="llm",pod="vllm-9"}').status_code == 201
    envelope = assert_envelope(collect(api), 502, "upstream_invalid_metrics")
    assert 'pod="vllm-9"' in envelope["message"]


def test_a_match_selecting_two_servers_is_refused(api: TestClient[Litestar], fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.series += vector_of_page(PAGE.decode(), {**TARGET, "pod": "vllm-1", "instance": "10.0.0.6:8000"})
    assert register(api, match='{namespace="llm"}').status_code == 201
    envelope = assert_envelope(collect(api), 502, "upstream_invalid_metrics")
    assert "selects 2 scrape targets (vllm/10.0.0.5:8000, vllm/10.0.0.6:8000)" in envelope["message"]


def test_labels_prometheus_attached_are_dropped_even_when_the_match_does_not_name_them(
    api: TestClient[Litestar],
) -> None:
    assert register(api, match='{namespace="llm"}').status_code == 201
    config = collect(api).json()["engine_config"]
    assert config["block_size"] == 16
    assert not {"pod", "namespace", "job", "instance"} & set(config)


def test_a_target_without_engine_series_is_reported(api: TestClient[Litestar], fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.series = [({"__name__": "up", **TARGET}, 0.0)]
    assert register(api).status_code == 201
    envelope = assert_envelope(collect(api), 502, "upstream_invalid_metrics")
    assert "no vllm series" in envelope["message"]


def test_an_unreachable_prometheus_is_upstream_unreachable(client_factory: ClientFactory) -> None:
    client = client_factory(scrape_background=False, prometheus_url="http://127.0.0.1:9")
    assert register(client).status_code == 201
    assert_envelope(collect(client), 502, "upstream_unreachable")


def test_prometheus_outside_the_scrape_allowlist_is_refused(
    client_factory: ClientFactory, fake_prometheus: FakePrometheus
) -> None:
    client = client_factory(
        scrape_background=False, prometheus_url=fake_prometheus.url, scrape_allowlist=["10.0.0.0/8"]
    )
    assert register(client).status_code == 201
    assert_envelope(collect(client), 403, "target_not_allowed")
    assert fake_prometheus.requests == []


def test_without_a_prometheus_url_collect_says_so(client_factory: ClientFactory) -> None:
    client = client_factory(scrape_background=False)
    assert register(client).status_code == 201
    envelope = assert_envelope(collect(client), 422, "scrape_config_invalid")
    assert "PERF_AGENT_PROMETHEUS_URL" in envelope["message"]


def test_an_unset_header_variable_is_a_config_error(
    client_factory: ClientFactory, fake_prometheus: FakePrometheus
) -> None:
    client = client_factory(
        scrape_background=False,
        prometheus_url=fake_prometheus.url,
        prometheus_headers_env=["Authorization=NO_SUCH_VAR"],
    )
    assert register(client).status_code == 201
    envelope = assert_envelope(collect(client), 422, "scrape_config_invalid")
    assert "NO_SUCH_VAR" in envelope["message"]
    assert fake_prometheus.requests == []


def test_collect_without_endpoint_on_a_scrape_instance_is_a_422(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(api.post("/api/v1/collect/vllm", json={"instance_id": "new"}), 422, "validation_error")
    assert envelope["details"][0]["field"] == "body.endpoint"
