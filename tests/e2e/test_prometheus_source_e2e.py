"""A real Prometheus scrapes six simulated servers; the agent discovers them and reads them through it.

Prometheus scrapes every second; the simulators run 20x faster than real time so a 20 s window
holds hundreds of requests. Checked: discovery registers all six within one interval; window
figures read through Prometheus equal PromQL's own over the same range (within 2%) and direct
scrapes of the same servers read at other instants (within 10%); a stopped server becomes
`gone` within three discovery intervals; a new one appears. Targets are given to Prometheus by
`file_sd_configs`, so servers come and go without reloading it.

Like with like: the agent's window is the difference of two readings, each the values of one
scrape and dated by it. PromQL is evaluated at the second scrape's time over a range half a
scrape interval longer than the agent's window, so it holds exactly those two scrapes' samples
(a range excludes its left edge). `increase` then extrapolates the difference to the range's
edges by the same factor for every bucket of the server (they share scrape timestamps), which
leaves `histogram_quantile` unchanged, and `rate` divides that back by the range: both equal the
agent's figures but for float rounding and bucket interpolation.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.engines.registry import ADAPTERS
from performance_agent.simulator import start_simulator
from tests.agent_process import ServedAgent, wait_for
from tests.prometheus_support import prometheus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from performance_agent.simulator import SimulatedFleet
    from tests.prometheus_support import RunningServer

pytestmark = pytest.mark.e2e

ENGINES = ("vllm", "tgi", "sglang")
DISCOVERY_INTERVAL_S = 3
WINDOW_S = 20.0
#: The KV gauge each simulated engine writes (TGI's usage is computed from two batch gauges).
KV_GAUGES = {"vllm": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"), "sglang": ("sglang:token_usage",)}


def _write_targets(directory: Path, engine: str, fleets: list[SimulatedFleet]) -> None:
    """Prometheus's `file_sd_configs` file for one engine's servers (re-read on change)."""
    groups = [
        {"targets": [h.endpoint.removeprefix("http://")], "labels": {"namespace": "llm", "pod": h.instance_id}}
        for fleet in fleets
        for h in fleet.instances
    ]
    (directory / f"{engine}.json.tmp").write_text(json.dumps(groups))
    (directory / f"{engine}.json.tmp").rename(directory / f"{engine}.json")  # atomically, as file_sd asks


def _config(directory: Path, fleets: dict[str, SimulatedFleet]) -> str:
    jobs = []
    for engine, fleet in fleets.items():
        _write_targets(directory, engine, [fleet])
        jobs.append(
            f"  - job_name: {engine}\n    metrics_path: {fleet.instances[0].metrics_path}\n"
            f"    file_sd_configs:\n      - files: ['{directory / engine}.json']\n        refresh_interval: 1s\n"
        )
    return "global:\n  scrape_interval: 1s\nscrape_configs:\n" + "".join(jobs)


def _rules() -> str:
    return json.dumps([{"engine": e, "match": f'{{job="{e}"}}', "instance_id": "{namespace}-{pod}"} for e in ENGINES])


@pytest.fixture
def fleets() -> Iterator[dict[str, SimulatedFleet]]:
    started = {engine: start_simulator(engine, 2, seed=11, time_scale=20) for engine in ENGINES}
    yield started
    for fleet in started.values():
        fleet.stop()


def promql(server: RunningServer, query: str, at: float) -> float | None:
    answer = server.get("/api/v1/query", query=query, time=f"{at:.3f}").json()
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    return None if not result else float(result[0]["value"][1])


def _selector(pod: str, engine: str, only: tuple[str, frozenset[str]] | None) -> str:
    parts = [f'pod="{pod}"'] + [f'{label}=~"0|"' for label in ADAPTERS[engine].objective_series.rank_zero_labels]
    if only is not None:
        parts.append(f'{only[0]}=~"{"|".join(sorted(only[1]))}"')
    return "{" + ",".join(parts) + "}"


def promql_range(window_s: float) -> str:
    """The range selecting exactly the two scrapes the agent's window spans (see the module docstring)."""
    return f"[{round((window_s + 0.5) * 1000)}ms]"


def promql_quantile(
    server: RunningServer, engine: str, pod: str, objective: str, q: float, at: float, window_s: float
) -> float | None:
    for series in getattr(ADAPTERS[engine].objective_series, objective):
        selector = _selector(pod, engine, series.only)
        query = (
            f"histogram_quantile({q}, sum by (le) (increase({series.name}_bucket{selector}{promql_range(window_s)})))"
        )
        value = promql(server, query, at)
        if value is not None:
            return value
    return None


def close(actual: float | None, expected: float | None, tolerance: float) -> bool:
    assert actual is not None, expected
    assert expected is not None
    return abs(actual - expected) <= tolerance * max(abs(expected), 1e-9)


def test_discovered_servers_read_through_prometheus_match_promql_and_direct_scrapes(
    tmp_path: Path, fleets: dict[str, SimulatedFleet]
) -> None:
    targets = tmp_path / "targets"
    targets.mkdir()
    with prometheus(tmp_path / "prometheus", _config(targets, fleets)) as server:
        agent = ServedAgent(
            tmp_path / "agent.db",
            tmp_path / "agent.log",
            headers={},
            settings={
                "PERF_AGENT_SCRAPE_BACKGROUND": "false",
                "PERF_AGENT_PROMETHEUS_URL": server.base,
                "PERF_AGENT_PROMETHEUS_DISCOVERY": _rules(),
                "PERF_AGENT_PROMETHEUS_DISCOVERY_INTERVAL_S": str(DISCOVERY_INTERVAL_S),
            },
        )
        try:
            _check(agent, server, fleets)
            _gone_and_new(agent, targets, fleets)
        finally:
            agent.stop()


def _discovered(agent: ServedAgent) -> dict[str, dict[str, Any]]:
    return {i["instance_id"]: i for i in agent.get("/api/v1/instances", source="prometheus").json()}


def _check(agent: ServedAgent, server: RunningServer, fleets: dict[str, SimulatedFleet]) -> None:
    pods = {h.instance_id: engine for engine, fleet in fleets.items() for h in fleet.instances}
    # Prometheus has the series after its first scrape; discovery registers them at its next round.
    wait_for(lambda: promql(server, "count(up == 1)", time.time()) == len(pods), "Prometheus to scrape all six")
    listed_at = time.monotonic()
    wait_for(lambda: len(_discovered(agent)) == len(pods), "discovery to register all six", deadline_s=15)
    assert time.monotonic() - listed_at <= DISCOVERY_INTERVAL_S + 1.5
    assert sorted(_discovered(agent)) == sorted(f"llm-{pod}" for pod in pods)

    for pod, engine in pods.items():
        handle = next(h for h in fleets[engine].instances if h.instance_id == pod)
        direct = {"instance_id": f"direct-{pod}", "endpoint": handle.endpoint, "metrics_path": handle.metrics_path}
        assert agent.post(f"/api/v1/collect/{engine}", direct).status_code == 200
        assert agent.post(f"/api/v1/collect/{engine}", {"instance_id": f"llm-{pod}"}).status_code == 200
    time.sleep(WINDOW_S)
    for pod, engine in pods.items():
        read = agent.post(f"/api/v1/collect/{engine}", {"instance_id": f"llm-{pod}"})
        assert read.status_code == 200, read.text
        handle = next(h for h in fleets[engine].instances if h.instance_id == pod)
        direct_body = {"instance_id": f"direct-{pod}", "endpoint": handle.endpoint, "metrics_path": handle.metrics_path}
        scraped = agent.post(f"/api/v1/collect/{engine}", direct_body).json()
        _compare(server, engine, pod, read.json(), scraped)


def _gone_and_new(agent: ServedAgent, targets: Path, fleets: dict[str, SimulatedFleet]) -> None:
    """The TGI servers stop (Prometheus keeps their target, now down): gone; a new SGLang server appears."""
    fleets["tgi"].stop()
    newcomer = start_simulator("sglang", 1, seed=12, time_scale=20)
    try:
        _write_targets(targets, "sglang", [fleets["sglang"], newcomer])
        new_id = f"llm-{newcomer.instances[0].instance_id}"
        wait_for(lambda: new_id in _discovered(agent), "the new server to be registered", deadline_s=15)
        tgi_ids = [f"llm-{h.instance_id}" for h in fleets["tgi"].instances]
        stopped_at = time.monotonic()
        wait_for(
            lambda: all(_discovered(agent)[i]["gone"] for i in tgi_ids), "the stopped servers to be gone", deadline_s=20
        )
        assert time.monotonic() - stopped_at <= 3 * DISCOVERY_INTERVAL_S + 1
        assert not any(i["gone"] for iid, i in _discovered(agent).items() if iid not in tgi_ids)
    finally:
        newcomer.stop()


def _compare(server: RunningServer, engine: str, pod: str, read: dict[str, Any], scraped: dict[str, Any]) -> None:
    at = datetime.fromisoformat(read["collected_at"]).timestamp()
    assert read["window_s"] >= WINDOW_S - 1, read
    objectives = ("e2e_s",) if engine == "tgi" else ("ttft_s", "itl_s", "e2e_s")
    for objective in objectives:
        for key, q in (("p50", 0.5), ("p99", 0.99)):
            mine = read["latency"][objective][key]
            theirs = promql_quantile(server, engine, pod, objective, q, at, read["window_s"])
            assert close(mine, theirs, 0.02), (engine, pod, objective, key, mine, theirs)
            assert close(scraped["latency"][objective][key], mine, 0.10), (engine, pod, objective, key)
    if engine != "tgi":
        (tokens,) = ADAPTERS[engine].objective_series.generation_tokens
        rate = promql(server, f'sum(rate({tokens.name}{{pod="{pod}"}}{promql_range(read["window_s"])}))', at)
        assert close(read["throughput"]["generation_tokens_per_s"], rate, 0.02), (engine, pod)
    assert close(scraped["throughput"]["generation_tokens_per_s"], read["throughput"]["generation_tokens_per_s"], 0.10)
    # KV usage is a gauge: the simulators move it within a second, so it is compared with Prometheus's
    # own sample of the same scrape, not with a direct scrape at another instant.
    if engine in KV_GAUGES:
        either = " or ".join(f'{name}{{pod="{pod}"}}' for name in KV_GAUGES[engine])
        kv = promql(server, f"max({either})", at)
        assert read["load"]["kv_cache_usage"] == pytest.approx(kv, rel=1e-9), (engine, pod)
