"""One discovery + collection cycle over 500 simulated vLLM servers through Prometheus, beside direct scrapes.

One simulator process serves all 500 on one port (`--single-port`, each under `/i/{id}/`); a real
Prometheus (Debian package `prometheus`) scrapes them every 10 s, each target its own
`__metrics_path__`. Two agents run in this process, each on its own SQLite file: one reads the
servers through Prometheus (discovery registers them; a cycle is one discovery round plus one
instant query per server), the other scrapes the same 500 itself. Their cycles alternate, and the
agent's wall time and CPU seconds (`time.process_time`) are measured inside `Collector.collect_all`
and around `PrometheusDiscovery.discover`. Prometheus's own CPU comes from its
`process_cpu_seconds_total` (https://prometheus.io/docs/instrumenting/writing_clientlibs/#process-metrics),
read before and after each cycle: it includes the scraping Prometheus does meanwhile, so its scraping
alone over the same span is reported beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from litestar.testing import TestClient

from performance_agent.app import create_app
from performance_agent.metrics.collector import Collector, CycleReport
from tests.agent_process import wait_for
from tests.bench.collection_bench import simulated_fleet
from tests.bench.figures import Figure
from tests.conftest import make_settings
from tests.prometheus_support import RunningServer, prometheus

if TYPE_CHECKING:
    from litestar import Litestar

COMMAND = "make bench  (tests/bench/prometheus_bench.py)"
FLEET = 500
SCRAPE_INTERVAL_S = 10
CYCLES = 3
_CPU_LINE = re.compile(r"^process_cpu_seconds_total (\S+)$", re.MULTILINE)


def _config(endpoint: str) -> str:
    """Every server is a target of its own at the hub's address, told apart by its metrics path."""
    address = endpoint.removeprefix("http://")
    groups = "".join(
        f"      - targets: ['{address}']\n        labels: {{__metrics_path__: /i/vllm-{i}/metrics, pod: vllm-{i}}}\n"
        for i in range(FLEET)
    )
    return (
        f"global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n  scrape_timeout: {SCRAPE_INTERVAL_S}s\n"
        f"scrape_configs:\n  - job_name: vllm\n    static_configs:\n{groups}"
    )


def _prometheus_cpu_s(server: RunningServer) -> float:
    found = _CPU_LINE.search(server.get("/metrics").text)
    if found is None:
        raise AssertionError("Prometheus's /metrics has no process_cpu_seconds_total")
    return float(found.group(1))


def _all_scraped(server: RunningServer) -> bool:
    """Every target up and scraped at least twice, so discovery's series window sees them all."""
    query = f'count(count_over_time(up{{job="vllm"}}[{SCRAPE_INTERVAL_S * 3}s]) >= 2)'
    result = server.get("/api/v1/query", query=query).json()["data"]["result"]
    return bool(result) and int(float(result[0]["value"][1])) == FLEET


def _collector(client: TestClient[Litestar]) -> Collector:
    agent = client.app.state.context
    settings = agent.settings
    return Collector(
        instances=agent.instances,
        collection=agent.collection,
        interval_s=15,
        concurrency=settings.scrape_concurrency,
        timeout_s=settings.scrape_timeout_s,
    )


def _through_prometheus_cycle(client: TestClient[Litestar], collector: Collector) -> CycleReport:
    discovery = client.app.state.context.discovery
    wall, cpu = time.perf_counter(), time.process_time()
    plan = client.blocking_portal.call(discovery.discover)
    discover_wall, discover_cpu = time.perf_counter() - wall, time.process_time() - cpu
    if plan.register or plan.mark_gone:
        raise AssertionError(f"the fleet changed during the benchmark: {plan}")
    report = client.blocking_portal.call(collector.collect_all)
    return CycleReport(
        instances=report.instances,
        succeeded=report.succeeded,
        failed=report.failed,
        wall_s=report.wall_s + discover_wall,
        cpu_s=report.cpu_s + discover_cpu,
    )


def _measure(tmp: Path) -> list[Figure]:
    with (
        simulated_fleet(FLEET) as endpoint,
        prometheus(tmp / "prometheus", _config(endpoint)) as server,
    ):
        wait_for(lambda: _all_scraped(server), f"Prometheus to scrape all {FLEET} servers twice", deadline_s=90)
        rules = '[{"engine": "vllm", "match": "{job=\\"vllm\\"}", "instance_id": "{pod}"}]'
        through = make_settings(database=f"{tmp}/through.db", scrape_background=False, scrape_concurrency=64,
                                log_level="WARNING",
                                prometheus_url=server.base, prometheus_discovery=rules,
                                prometheus_discovery_interval_s=3600)  # fmt: skip
        direct = make_settings(
            database=f"{tmp}/direct.db", scrape_background=False, scrape_concurrency=64, log_level="WARNING"
        )
        with TestClient(create_app(through)) as via, TestClient(create_app(direct)) as scraping:
            # The discovery loop's first round (at startup) registers the fleet; later rounds only confirm it.
            wait_for(lambda: len(via.get("/api/v1/instances").json()) == FLEET, "discovery to register all servers")
            for i in range(FLEET):
                body = {"instance_id": f"vllm-{i}", "engine": "vllm", "endpoint": endpoint,
                        "metrics_path": f"/i/vllm-{i}/metrics"}  # fmt: skip
                assert scraping.post("/api/v1/instances", json=body).status_code == 201
            via_collector, direct_collector = _collector(via), _collector(scraping)
            via_reports, direct_reports, prometheus_cpu = [], [], []
            idle_start = _prometheus_cpu_s(server)
            idle_wall = time.perf_counter()
            time.sleep(SCRAPE_INTERVAL_S * 2)
            idle_cpu_per_s = (_prometheus_cpu_s(server) - idle_start) / (time.perf_counter() - idle_wall)
            for _ in range(CYCLES + 1):  # the first of each is cold (connections, label sets)
                before = _prometheus_cpu_s(server)
                via_reports.append(_through_prometheus_cycle(via, via_collector))
                prometheus_cpu.append(_prometheus_cpu_s(server) - before)
                direct_reports.append(scraping.blocking_portal.call(direct_collector.collect_all))
    # A read that fails (a timeout on a loaded machine) still costs its time; it is counted, not hidden.
    missing = [r for r in via_reports + direct_reports if r.instances != FLEET]
    if missing:
        raise AssertionError(f"instances were missing during the benchmark: {missing}")
    via_failed = sum(r.failed for r in via_reports)
    direct_failed = sum(r.failed for r in direct_reports)
    via_wall = statistics.median(r.wall_s for r in via_reports[1:])
    via_cpu = statistics.median(r.cpu_s for r in via_reports[1:])
    direct_wall = statistics.median(r.wall_s for r in direct_reports[1:])
    direct_cpu = statistics.median(r.cpu_s for r in direct_reports[1:])
    prom_cpu = statistics.median(prometheus_cpu[1:])
    section = (
        f"Prometheus source vs direct scrapes ({FLEET} simulated vLLM servers on one simulator process, "
        f"Prometheus scraping every {SCRAPE_INTERVAL_S} s, concurrency 64, median of {CYCLES} steady cycles)"
    )
    return [
        Figure(section=section, name="wall time per cycle: through Prometheus (discovery + reads) / direct",
               value=f"{via_wall:.2f} s / {direct_wall:.2f} s", target="- (side by side)",
               met=None, command=COMMAND),
        Figure(section=section, name="agent CPU per cycle: through Prometheus / direct",
               value=f"{via_cpu:.2f} CPU-s / {direct_cpu:.2f} CPU-s", target="- (side by side)",
               met=None, command=COMMAND),
        Figure(section=section, name="Prometheus CPU during a through-Prometheus cycle (queries + its scraping)",
               value=f"{prom_cpu:.2f} CPU-s (its scraping alone: {idle_cpu_per_s * via_wall:.2f} CPU-s over as long)",
               target="-", met=None, command=COMMAND),
        Figure(section=section, name="first cycle (cold): through Prometheus / direct",
               value=f"{via_reports[0].wall_s:.2f} s, {via_reports[0].cpu_s:.2f} CPU-s / "
                     f"{direct_reports[0].wall_s:.2f} s, {direct_reports[0].cpu_s:.2f} CPU-s",
               target="-", met=None, command=COMMAND),
        Figure(section=section, name=f"failed reads over all {CYCLES + 1} cycles: through Prometheus / direct",
               value=f"{via_failed} / {direct_failed} of {FLEET * (CYCLES + 1)}", target="0",
               met=via_failed == direct_failed == 0, command=COMMAND),
    ]  # fmt: skip


def run() -> list[Figure]:
    if shutil.which("prometheus") is None:
        raise RuntimeError("this benchmark needs Prometheus: apt-get install -y prometheus (Debian package)")
    os.environ.setdefault("PERF_AGENT_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="perf-agent-bench-") as tmp:
        return _measure(Path(tmp))


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value} (target {figure.target})")
