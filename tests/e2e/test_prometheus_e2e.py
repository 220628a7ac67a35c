"""A real Prometheus reads the agent: targets through `http_sd_configs` (with the bearer key), and the rule file.

Prometheus scrapes every second and refreshes discovery every second, so each test takes a few
seconds. `promtool check rules` checks the generated file, and `promtool test rules` runs it on
series a breaching and a healthy vLLM server would write, so a wrong metric name, label or
threshold fails here rather than in a team's Prometheus.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.simulator import start_simulator
from tests.agent_process import ServedAgent, wait_for
from tests.prometheus_support import prometheus, require_binary

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from performance_agent.simulator import SimulatedFleet

pytestmark = pytest.mark.e2e

VIEWER_KEY = "e2e-prometheus-viewer-key-0123"
OPERATOR_KEY = "e2e-prometheus-operator-key-01"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ServedAgent]:
    served = ServedAgent(
        tmp_path / "agent.db",
        tmp_path / "agent.log",
        headers={"X-API-Key": OPERATOR_KEY},
        settings={
            "PERF_AGENT_API_KEYS": f"prom:viewer:{VIEWER_KEY},ops:operator:{OPERATOR_KEY}",
            "PERF_AGENT_SCRAPE_BACKGROUND": "false",
        },
    )
    yield served
    served.stop()


@pytest.fixture
def vllm() -> Iterator[SimulatedFleet]:
    fleet = start_simulator("vllm", 1, seed=5)
    yield fleet
    fleet.stop()


def active_targets(server: Any) -> list[dict[str, Any]]:
    answer = server.get("/api/v1/targets", state="active").json()
    return list(answer["data"]["activeTargets"])


def test_prometheus_scrapes_an_instance_registered_after_it_started(
    tmp_path: Path, agent: ServedAgent, vllm: SimulatedFleet
) -> None:
    config = f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: performance-agent-targets
    http_sd_configs:
      - url: {agent.base}/api/v1/prometheus/targets
        refresh_interval: 1s
        authorization:
          type: Bearer
          credentials: {VIEWER_KEY}
"""
    with prometheus(tmp_path / "prometheus", config) as server:
        wait_for(lambda: server.get("/api/v1/targets").status_code == 200, "the targets API")
        assert active_targets(server) == []  # nothing registered yet: an empty array is a valid answer
        handle = vllm.instances[0]
        registered = agent.post(
            "/api/v1/instances",
            {
                "instance_id": "vllm-sd-0",
                "engine": "vllm",
                "endpoint": handle.endpoint,
                "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            },
        )
        assert registered.status_code == 201, registered.text

        def scraped_up() -> dict[str, Any] | None:
            targets = active_targets(server)
            return next((t for t in targets if t["health"] == "up"), None)

        target = wait_for(scraped_up, "Prometheus to scrape the registered server", deadline_s=20)
        assert target["labels"]["instance_id"] == "vllm-sd-0"
        assert target["labels"]["perf_agent_engine"] == "vllm"
        assert target["labels"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
        assert target["scrapeUrl"] == handle.endpoint + "/metrics"
        # The engine's own series now carry the agent's instance_id: what the generated rules select on.
        selector = 'vllm:num_requests_running{instance_id="vllm-sd-0",perf_agent_engine="vllm"}'
        wait_for(
            lambda: server.get("/api/v1/query", query=f"count({selector})").json()["data"]["result"],
            "the first scraped series",
            deadline_s=10,
        )


def test_the_generated_rules_pass_promtool_check_and_page_on_a_breach(tmp_path: Path, agent: ServedAgent) -> None:
    promtool = require_binary("promtool")
    for instance_id, engine in (("vllm-r-0", "vllm"), ("tgi-r-0", "tgi"), ("sglang-r-0", "sglang")):
        body = {"instance_id": instance_id, "engine": engine, "endpoint": "http://127.0.0.1:9"}
        assert agent.post("/api/v1/instances", body).status_code == 201
    loose: dict[str, Any] = {"instance_id": "vllm-r-1", "engine": "vllm", "endpoint": "http://127.0.0.1:9"}
    loose["slo"] = {"ttft_p99_s": 10.0, "ttft_p95_s": 10.0, "min_generation_tokens_per_s": 5.0}
    assert agent.post("/api/v1/instances", loose).status_code == 201
    answer = agent.get("/api/v1/prometheus/rules")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/yaml")
    rules = tmp_path / "rules.yml"
    rules.write_text(answer.text)

    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    tests = tmp_path / "rules_test.yml"
    tests.write_text(json.dumps(promtool_tests(rules.name)))
    tested = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def ttft_series(instance_id: str, slow: bool) -> list[dict[str, str]]:
    """Ten requests a scrape (15 s): all slower than 5 s when `slow`, else all under 1 s."""
    name = "vllm:time_to_first_token_seconds_bucket"
    fast_bucket = "0+0x100" if slow else "0+10x100"
    return [
        {"series": f'{name}{{instance_id="{instance_id}",le="1.0"}}', "values": fast_bucket},
        {"series": f'{name}{{instance_id="{instance_id}",le="5.0"}}', "values": fast_bucket},
        {"series": f'{name}{{instance_id="{instance_id}",le="+Inf"}}', "values": "0+10x100"},
    ]


def fired(instance_id: str, objective: str, long_window: str, short_window: str, factor: str, target: str) -> Any:
    return {
        "exp_labels": {
            "alertname": "PerformanceAgentSLOBurnRate",
            "instance_id": instance_id,
            "objective": objective,
            "long_window": long_window,
            "short_window": short_window,
            "severity": "page",
        },
        "exp_annotations": {
            "summary": f"{objective} burns its error budget on {instance_id}",
            "description": (
                f"Burn rate 100.00x over {long_window}, and over {short_window} at least {factor}x "
                f"(target <= {target})."
            ),
        },
    }


def burn_rate(window: str, value: float) -> dict[str, Any]:
    """A `promql_expr_test` of vllm-r-0's TTFT p99 burn rate over `window` at ten minutes."""
    series = f'perf_agent:slo_burn_rate{{instance_id="vllm-r-0",objective="ttft_p99_s",window="{window}"}}'
    return {"expr": series, "eval_time": "10m", "exp_samples": [{"labels": series, "value": value}]}


def promtool_tests(rule_file: str) -> dict[str, Any]:
    """vllm-r-0 breaches TTFT from its first sample (p99 and p95 land in the 1-5 s bucket, above its 2 s
    and 1 s targets): both pairs page by ten minutes, Prometheus judging a new series on the data it
    has. vllm-r-1 is as slow but its own targets are 10 s (its series are the same): no alert for it.
    Healthy requests (all under 1 s) give burn rate 0 and no alert.
    """
    both_pairs = [
        fired("vllm-r-0", objective, long_window, short_window, factor, target)
        for objective, target in (("ttft_p99_s", "2"), ("ttft_p95_s", "1"))
        for long_window, short_window, factor in (("1h", "5m", "14.4"), ("6h", "30m", "6"))
    ]
    return {
        "rule_files": [rule_file],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": ttft_series("vllm-r-0", slow=True) + ttft_series("vllm-r-1", slow=True),
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "PerformanceAgentSLOBurnRate", "exp_alerts": both_pairs}
                ],
                "promql_expr_test": [burn_rate("5m", 100)],
            },
            {
                "interval": "15s",
                "input_series": ttft_series("vllm-r-0", slow=False),
                "alert_rule_test": [{"eval_time": "10m", "alertname": "PerformanceAgentSLOBurnRate", "exp_alerts": []}],
                "promql_expr_test": [burn_rate("1h", 0)],
            },
        ],
    }
