"""Discovery rounds against a fake Prometheus over real sockets: register, keep SLO changes, gone, back, hands off."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from performance_agent.context import AgentContext
from performance_agent.fleet.discovery import DiscoveryPlan
from performance_agent.metrics.scraper import ScrapeFailure
from performance_agent.settings import SettingsError, load_settings
from tests.conftest import ClientFactory, assert_envelope
from tests.prometheus_fake import Failure, FakePrometheus, fake_prometheus

__all__ = ("fake_prometheus",)

RULES = [
    {
        "engine": "vllm",
        "match": '{job="vllm"}',
        "instance_id": "{namespace}-{pod}",
        "labels": {"team": "search"},
        "slo": {"ttft_p99_s": 1.5},
    }
]
INTERVAL_S = 600.0


def _server(pod: str) -> list[tuple[dict[str, str], float]]:
    target = {"job": "vllm", "instance": f"{pod}:8000", "namespace": "llm", "pod": pod}
    return [
        ({"__name__": "up", **target}, 1.0),
        ({"__name__": "vllm:num_requests_running", "model_name": "m", "engine": "0", **target}, 1.0),
        ({"__name__": "vllm:num_requests_running", "model_name": "m", "engine": "1", **target}, 1.0),
    ]


@pytest.fixture
def agent(client_factory: ClientFactory, fake_prometheus: FakePrometheus) -> TestClient[Litestar]:
    fake_prometheus.series = _server("vllm-0") + _server("vllm-1")
    client = client_factory(
        scrape_background=False,
        prometheus_url=fake_prometheus.url,
        prometheus_discovery=json.dumps(RULES),
        prometheus_discovery_interval_s=INTERVAL_S,
    )
    deadline = time.monotonic() + 10
    while len(client.get("/api/v1/instances").json()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the first round runs when the agent starts
    return client


def discover(client: TestClient[Litestar]) -> DiscoveryPlan:
    context: AgentContext = client.app.state.context
    assert context.discovery is not None
    portal = client.blocking_portal
    assert portal is not None
    return portal.call(context.discovery.discover)


def instances(client: TestClient[Litestar], **query: str) -> dict[str, dict[str, Any]]:
    return {i["instance_id"]: i for i in client.get("/api/v1/instances", params=query).json()}


def test_the_first_round_registers_every_server_once_with_the_rule(
    agent: TestClient[Litestar], fake_prometheus: FakePrometheus
) -> None:
    found = instances(agent, source="prometheus")
    assert sorted(found) == ["llm-vllm-0", "llm-vllm-1"]
    first = found["llm-vllm-0"]
    assert (first["discovered"], first["gone"], first["engine"], first["labels"]) == (
        True,
        False,
        "vllm",
        {"team": "search"},
    )
    assert first["match"] == '{instance="vllm-0:8000",job="vllm",namespace="llm",pod="vllm-0"}'
    assert first["slo"]["ttft_p99_s"] == 1.5
    request = fake_prometheus.requests[0]
    assert request["path"] == "/api/v1/series"
    assert request["form"]["match[]"] == ['vllm:num_requests_running{job="vllm"}', 'up{job="vllm"}']
    start, end = float(request["form"]["start"][0]), float(request["form"]["end"][0])
    assert end - start == pytest.approx(INTERVAL_S, abs=0.01)


def test_a_discovered_instance_reads_through_prometheus(agent: TestClient[Litestar]) -> None:
    response = agent.post("/api/v1/collect/vllm", json={"instance_id": "llm-vllm-1"})
    assert response.status_code == 200, response.text
    assert response.json()["load"]["requests_running"] == 2.0  # both data-parallel ranks of one server


def test_slo_changes_stick_and_the_rule_is_never_reapplied(agent: TestClient[Litestar]) -> None:
    assert agent.put("/api/v1/instances/llm-vllm-0/slo", json={"ttft_p99_s": 9.0}).status_code == 200
    discover(agent)
    assert instances(agent)["llm-vllm-0"]["slo"]["ttft_p99_s"] == 9.0


def test_a_vanished_server_is_gone_kept_and_refused_for_rollouts_then_back(
    agent: TestClient[Litestar], fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.series = _server("vllm-0")
    plan = discover(agent)
    assert plan.mark_gone == ["llm-vllm-1"]
    gone = instances(agent, source="prometheus")["llm-vllm-1"]
    assert gone["gone"] is True
    body = {
        "instance_ids": ["llm-vllm-1"],
        "changes": {"--max-num-seqs": 128},
        "actuator": {"url": "http://127.0.0.1:9/h"},
    }
    envelope = assert_envelope(agent.post("/api/v1/workflows", json=body), 422, "validation_error")
    assert envelope["details"][0]["type"] == "gone"
    fake_prometheus.series = _server("vllm-0") + _server("vllm-1")
    assert discover(agent).mark_back == ["llm-vllm-1"]
    assert instances(agent)["llm-vllm-1"]["gone"] is False


def test_a_new_server_appears_at_the_next_round(agent: TestClient[Litestar], fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.series += _server("vllm-2")
    assert [server.instance_id for server in discover(agent).register] == ["llm-vllm-2"]
    assert "llm-vllm-2" in instances(agent)


def test_hand_registered_instances_are_never_touched(
    agent: TestClient[Litestar], fake_prometheus: FakePrometheus
) -> None:
    hand = {"instance_id": "llm-vllm-9", "engine": "vllm", "source": "prometheus", "match": '{pod="vllm-9"}'}
    assert agent.post("/api/v1/instances", json=hand).status_code == 201
    fake_prometheus.series += _server("vllm-9")
    plan = discover(agent)
    assert plan.conflicts == ["llm-vllm-9"]
    fake_prometheus.series = []
    discover(agent)
    registered = instances(agent)["llm-vllm-9"]
    assert (registered["match"], registered["discovered"], registered["gone"]) == ('{pod="vllm-9"}', False, False)


def test_a_failed_round_changes_nothing(agent: TestClient[Litestar], fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.failure = Failure(503, b'{"status": "error", "errorType": "unavailable", "error": "down"}')
    with pytest.raises(ScrapeFailure):
        discover(agent)
    assert not any(i["gone"] for i in instances(agent).values())


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"PERF_AGENT_PROMETHEUS_DISCOVERY": json.dumps(RULES)}, "needs PERF_AGENT_PROMETHEUS_URL"),
        (
            {
                "PERF_AGENT_PROMETHEUS_URL": "http://127.0.0.1:9090",
                "PERF_AGENT_PROMETHEUS_DISCOVERY": '[{"engine": "vllm", "match": "job", "instance_id": "{pod}"}]',
            },
            "rule 0: match",
        ),
        ({"PERF_AGENT_PROMETHEUS_HEADERS_ENV": "X-Scope-OrgID"}, "Header-Name=ENV_VAR"),
    ],
)
def test_prometheus_settings_are_checked_at_startup(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(fragment)):
        load_settings(environ)
