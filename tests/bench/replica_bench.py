"""Three replicas on one PostgreSQL database: what each costs with 1,000 active workflows, and takeover.

Three `python -m performance_agent serve` processes (uvicorn, the default tick of 1 s and lease
TTL of 10 s) share one fresh PostgreSQL database (tests/postgres_support.py). 1,000 workflows,
each over two simulated vLLM servers (a canary and a control; 2,000 servers served by a separate
simulator process, as real servers would be), make a harmless change with a monitor interval of
60 s and a duration of 2 h, so all stay in stage 0 `monitoring` for the measurement. Background
collection is off (`PERF_AGENT_SCRAPE_BACKGROUND=false`), so each health window ends on scrapes
the reconciler takes itself and every replica does the same kind of work; the leader's own loops
(collection, discovery, alerts) are idle. The interval is 60 s rather than the default 15 s to keep
the simulated fleet cheap on a shared 2-core machine (about 6 ms of simulator CPU per scrape): the
1,000 workflows end about 17 windows a second between them. The workflows are created through the
three replicas in turn, evenly over one interval, as independent rollouts would start, so their
windows spread over it.

1. Per-replica cost: once every workflow is monitoring, each replica's process CPU (utime + stime
   from /proc/<pid>/stat) is sampled every second, one reconciler tick period (a tick, then a 1 s
   sleep), for `MEASURE_S`; the whole process is counted (the tick, the status gauge, lease and
   claim renewals, an idle API). How the work spread: the health windows each replica judged in
   that time (its `performance_agent_workflow_windows_total`): every replica claims due
   workflows, and claims are released when a tick is done, so windows judged is what shows the
   split. Resident memory is read from /proc/<pid>/status.
2. Takeover: the leader (found through `GET /api/v1/health/detailed`) is killed with SIGKILL at a
   random (seeded) moment of its renewal cycle; the two survivors are polled every 50 ms until one
   reports `role: leader`; then the killed one is started again (a new replica id). Five kills.
3. API on a survivor: a client sends `GET /api/v1/workflows?limit=20` and `GET
   /api/v1/workflows/{id}` in turn, one every 50 ms, to a replica that is not about to be killed;
   latencies inside the takeover windows (kill to new leader) are compared with a quiet baseline
   taken just before the kills on a follower.

Every ERROR line the replicas log over the run is counted (a killed replica logs nothing; a
survivor should not log errors either), the deadlocks between replicas' claims among them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agent_process import wait_for
from tests.bench.analysis_bench import percentile
from tests.bench.figures import Figure, render_section
from tests.bench.rollout_bench import rss_mb, simulator_process
from tests.postgres_support import fresh_database_url
from tests.rollout_support import AgentProcess, WebhookReceiver

__all__ = ("counter_total", "cpu_seconds", "inside", "main", "run")

COMMAND = "make bench  (tests/bench/replica_bench.py; alone: python -m tests.bench.replica_bench)"
SECRET = "replica-bench-secret-0123"
REPLICAS = 3
WORKFLOWS = 1000
SERVERS_PER_WORKFLOW = 2
INTERVAL_S = 60.0
MEASURE_S = 60.0
QUIET_S = 15.0
KILLS = 5
POLL_S = 0.05
PROBE_PAUSE_S = 0.05
LEASE_TTL_S = 10.0  # the default, stated so the report cannot drift from the run
TAKEOVER_TARGET_S = 15.0
SETTLE_AFTER_RESTART_S = 3.0
SETUP_LIMIT_S = 300.0
WINDOWS_COUNTER = "performance_agent_workflow_windows"


# --------------------------------------------------------------------------- pure helpers


def cpu_seconds(stat: str, ticks_per_s: float) -> float:
    """User + system CPU seconds from the text of /proc/<pid>/stat (proc(5): fields 14 and 15).

    The command name (field 2) is in parentheses and may itself hold spaces or parentheses, so the
    fields are counted from after its last `)`.
    """
    after_name = stat.rsplit(")", 1)[1].split()
    # after_name[0] is field 3 (state): field n is after_name[n - 3].
    return (int(after_name[11]) + int(after_name[12])) / ticks_per_s


def counter_total(page: str, family: str) -> float:
    """The sum over every label set of the counter `family` (named without `_total`) on a /metrics page."""
    for metric in text_string_to_metric_families(page):
        if metric.name == family:
            return sum(sample.value for sample in metric.samples if sample.name == f"{family}_total")
    return 0.0


def inside(moment: float, windows: list[tuple[float, float]]) -> bool:
    """Whether `moment` falls in one of the closed intervals `windows`."""
    return any(start <= moment <= end for start, end in windows)


# --------------------------------------------------------------------------- the replicas


def _ticks_per_s() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


class Cluster:
    """The three agent processes; a killed one is replaced by a new process (a new replica id)."""

    def __init__(self, workdir: Path, database_url: str) -> None:
        self._workdir = workdir
        self._database_url = database_url
        self._starts = 0
        self.logs: list[Path] = []
        self.agents = [self._start() for _ in range(REPLICAS)]

    def _start(self) -> AgentProcess:
        self._starts += 1
        self.logs.append(self._workdir / f"replica-{self._starts}.log")
        return AgentProcess(
            self._workdir / "unused.db",
            self.logs[-1],
            SECRET,
            PERF_AGENT_DATABASE_URL=self._database_url,
            PERF_AGENT_LEASE_TTL_S=f"{LEASE_TTL_S:g}",
            PERF_AGENT_WORKFLOW_TICK_S="1",
            PERF_AGENT_WEBHOOK_TIMEOUT_S="5",
            PERF_AGENT_SCRAPE_TIMEOUT_S="10",
        )

    def restart(self, index: int) -> None:
        self.agents[index] = self._start()

    def replica(self, index: int) -> dict[str, object]:
        found: dict[str, object] = self.agents[index].get("/api/v1/health/detailed").json()["replica"]
        return found

    def leader_index(self) -> int | None:
        for index in range(REPLICAS):
            if self.replica(index)["role"] == "leader":
                return index
        return None

    def cpu(self, index: int) -> float:
        pid = self.agents[index].process.pid
        return cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), _ticks_per_s())

    def windows_judged(self, index: int) -> float:
        agent = self.agents[index]
        return counter_total(httpx.get(f"{agent.base}/metrics", timeout=10).text, WINDOWS_COUNTER)

    def errors_logged(self) -> tuple[int, int]:
        """ERROR lines in every replica's log so far (killed ones included), and how many were deadlocks."""
        lines = [line for log in self.logs for line in log.read_text(errors="replace").splitlines()]
        errors = [line for line in lines if '"level":"ERROR"' in line]
        return len(errors), sum(1 for line in errors if "DeadlockDetected" in line)

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()


def _register(agent: AgentProcess, endpoint: str, count: int) -> None:
    with httpx.Client(base_url=agent.base, headers=agent.headers, timeout=30) as client:
        for index in range(count):
            body = {"instance_id": f"vllm-{index}", "engine": "vllm", "endpoint": endpoint,
                    "metrics_path": f"/i/vllm-{index}/metrics", "engine_args": {"max_num_seqs": 256}}  # fmt: skip
            response = client.post("/api/v1/instances", json=body)
            if response.status_code != 201:
                raise AssertionError(response.text)


def _create_workflows(cluster: Cluster, receiver_url: str, workflows: int) -> list[str]:
    """Through the replicas in turn, evenly over one monitor interval, so the windows spread over it."""
    clients = [httpx.Client(base_url=a.base, headers=a.headers, timeout=30) for a in cluster.agents]
    created = []
    started = time.monotonic()
    try:
        for index in range(workflows):
            time.sleep(max(0.0, started + index * INTERVAL_S / workflows - time.monotonic()))
            body = {
                "instance_ids": [f"vllm-{SERVERS_PER_WORKFLOW * index + n}" for n in range(SERVERS_PER_WORKFLOW)],
                "changes": {"max_num_seqs": 128},
                "actuator": {"type": "webhook", "url": receiver_url},
                "monitor": {"duration_s": 7200, "interval_s": INTERVAL_S, "warmup_s": 5},
            }
            response = clients[index % REPLICAS].post("/api/v1/workflows", json=body)
            if response.status_code != 201:
                raise AssertionError(response.text)
            created.append(str(response.json()["workflow_id"]))
    finally:
        for client in clients:
            client.close()
    return created


def _statuses(agent: AgentProcess) -> dict[str, float]:
    """Workflows by status, from the gauge every replica publishes after each tick."""
    page = httpx.get(f"{agent.base}/metrics", timeout=10).text
    for metric in text_string_to_metric_families(page):
        if metric.name == "performance_agent_workflows":
            return {sample.labels["status"]: sample.value for sample in metric.samples}
    return {}


# --------------------------------------------------------------------------- the API probe


@dataclass(slots=True)
class Probe:
    """Sends the two reads in turn to `target` until stopped; records (sent at, seconds, ok)."""

    workflow_ids: list[str]
    target: AgentProcess
    results: list[tuple[float, float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        rng = random.Random(11)
        with httpx.Client(timeout=10) as client:
            sent = 0
            while not self._stop.is_set():
                target = self.target
                path = ("/api/v1/workflows?limit=20" if sent % 2 == 0
                        else f"/api/v1/workflows/{rng.choice(self.workflow_ids)}")  # fmt: skip
                started = time.monotonic()
                try:
                    ok = client.get(target.base + path, headers=target.headers).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.results.append((started, time.monotonic() - started, ok))
                sent += 1
                time.sleep(PROBE_PAUSE_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


# --------------------------------------------------------------------------- the measurement


@dataclass(slots=True)
class ReplicaLoad:
    leader: bool
    cpu_per_tick_s: list[float]
    windows_judged: float
    rss_mb: float


@dataclass(slots=True)
class Measured:
    workflows: int
    settled: dict[str, float]
    setup_s: float
    loads: list[ReplicaLoad]
    takeovers_s: list[float]
    quiet: list[tuple[float, float, bool]]
    during_takeover: list[tuple[float, float, bool]]
    errors_logged: int
    deadlocks_logged: int


def _load(cluster: Cluster) -> list[ReplicaLoad]:
    leader = cluster.leader_index()
    windows_before = [cluster.windows_judged(i) for i in range(REPLICAS)]
    samples: list[list[float]] = [[] for _ in range(REPLICAS)]
    previous = [cluster.cpu(i) for i in range(REPLICAS)]
    started = time.monotonic()
    for second in range(1, int(MEASURE_S) + 1):
        time.sleep(max(0.0, started + second - time.monotonic()))
        now = [cluster.cpu(i) for i in range(REPLICAS)]
        for index in range(REPLICAS):
            samples[index].append(now[index] - previous[index])
        previous = now
    windows_after = [cluster.windows_judged(i) for i in range(REPLICAS)]
    return [
        ReplicaLoad(
            leader=index == leader,
            cpu_per_tick_s=samples[index],
            windows_judged=windows_after[index] - windows_before[index],
            rss_mb=rss_mb(cluster.agents[index].process.pid)[0],
        )
        for index in range(REPLICAS)
    ]


def _takeovers(cluster: Cluster, probe: Probe) -> tuple[list[float], list[tuple[float, float]]]:
    rng = random.Random(20261203)
    takeovers: list[float] = []
    windows: list[tuple[float, float]] = []
    for _ in range(KILLS):
        (leader,) = wait_for(lambda: (lambda i: None if i is None else (i,))(cluster.leader_index()), "a leader")
        survivors = [index for index in range(REPLICAS) if index != leader]
        probe.target = cluster.agents[survivors[0]]
        time.sleep(rng.uniform(0.5, 0.5 + LEASE_TTL_S / 3))  # a random point of the leader's renewal cycle
        killed_at = time.monotonic()
        cluster.agents[leader].kill()
        while not any(cluster.replica(index)["role"] == "leader" for index in survivors):
            if time.monotonic() - killed_at > 4 * LEASE_TTL_S:
                raise AssertionError("no survivor took the leader lease")
            time.sleep(POLL_S)
        led_at = time.monotonic()
        takeovers.append(led_at - killed_at)
        windows.append((killed_at, led_at))
        cluster.restart(leader)
        time.sleep(SETTLE_AFTER_RESTART_S)
    return takeovers, windows


def measure(workflows: int = WORKFLOWS) -> Measured:
    servers = SERVERS_PER_WORKFLOW * workflows
    database_url = fresh_database_url()  # first: without PostgreSQL, skip before starting the simulator
    with tempfile.TemporaryDirectory(prefix="perf-agent-replica-bench-") as tmp, simulator_process(servers) as endpoint:
        receiver = WebhookReceiver().start()
        cluster = Cluster(Path(tmp), database_url)
        probe: Probe | None = None
        try:
            setup_started = time.monotonic()
            _register(cluster.agents[0], endpoint, servers)
            created = _create_workflows(cluster, receiver.url, workflows)

            def settled() -> dict[str, float] | None:
                counts = _statuses(cluster.agents[0])
                return counts if counts.get("monitoring", 0) + counts.get("paused", 0) >= workflows else None

            counts = wait_for(settled, "every workflow to be monitoring", SETUP_LIMIT_S)
            setup_s = time.monotonic() - setup_started
            loads = _load(cluster)

            follower = next(index for index in range(REPLICAS) if cluster.replica(index)["role"] == "follower")
            probe = Probe(created, cluster.agents[follower]).start()
            time.sleep(QUIET_S)
            quiet_until = time.monotonic()
            takeovers, windows = _takeovers(cluster, probe)
            probe.stop()
            quiet = [result for result in probe.results if result[0] < quiet_until]
            during = [result for result in probe.results if inside(result[0], windows)]
            errors, deadlocks = cluster.errors_logged()
            return Measured(workflows, {k: v for k, v in counts.items() if v}, setup_s, loads, takeovers, quiet,
                            during, errors, deadlocks)  # fmt: skip
        finally:
            if probe is not None:
                probe.stop()
            cluster.stop()
            receiver.stop()


# --------------------------------------------------------------------------- report


def _latencies(results: list[tuple[float, float, bool]]) -> str:
    answered = sorted(seconds for _, seconds, ok in results if ok)
    errors = sum(1 for _, _, ok in results if not ok)
    if not answered:
        return f"no answer; {errors} errors of {len(results)}"
    return (f"{percentile(answered, 0.5) * 1000:.1f} ms / {percentile(answered, 0.99) * 1000:.1f} ms "
            f"({len(results)} requests, {errors} errors)")  # fmt: skip


def figures(measured: Measured, command: str = COMMAND) -> list[Figure]:
    section = (f"Replicas ({measured.workflows:,} active workflows over {REPLICAS} replicas on one PostgreSQL "
               f"database, {SERVERS_PER_WORKFLOW * measured.workflows:,} simulated vLLM servers in another process, "
               f"monitor interval {INTERVAL_S:g} s, tick 1 s, lease TTL {LEASE_TTL_S:g} s)")  # fmt: skip
    total_windows = sum(load.windows_judged for load in measured.loads) or 1.0
    result = []
    for number, load in enumerate(measured.loads, 1):
        cpu = load.cpu_per_tick_s
        role = "leader" if load.leader else "follower"
        result.append(Figure(
            section=section,
            name=f"replica {number} ({role}): process CPU per 1 s tick period, median / max; windows judged "
                 f"in {MEASURE_S:g} s (share); resident memory",
            value=f"{statistics.median(cpu):.3f} / {max(cpu):.3f} CPU-s; {load.windows_judged:,.0f} "
                  f"({load.windows_judged / total_windows:.0%}); {load.rss_mb:.0f} MB",
            target="-", met=None, command=command))  # fmt: skip
    takeovers = measured.takeovers_s
    listed = ", ".join(f"{seconds:.1f}" for seconds in takeovers)
    result += [
        Figure(section=section, name=f"takeover after SIGKILL of the leader (kill to a survivor reporting "
               f"`role: leader`, polled every {POLL_S * 1000:.0f} ms), median / max of {len(takeovers)}",
               value=f"{statistics.median(takeovers):.1f} s / {max(takeovers):.1f} s ({listed})",
               target=f"<= {TAKEOVER_TARGET_S:g} s", met=max(takeovers) <= TAKEOVER_TARGET_S, command=command),
        Figure(section=section, name="API on a follower, quiet baseline (GET /workflows?limit=20 and "
               "/workflows/{id} in turn, every 50 ms): p50 / p99", value=_latencies(measured.quiet), target="-",
               met=None, command=command),
        Figure(section=section, name="API on a surviving replica during the takeovers (kill to new leader): "
               "p50 / p99", value=_latencies(measured.during_takeover), target="-", met=None, command=command),
        Figure(section=section, name="ERROR lines in the replicas' logs over the whole run (of them: PostgreSQL "
               "deadlocks between replicas claiming due workflows)", value=f"{measured.errors_logged} "
               f"({measured.deadlocks_logged})", target="0", met=measured.errors_logged == 0, command=command),
        Figure(section=section, name="setup (register servers, create workflows over one interval, all "
               "monitoring); workflows by status", value=f"{measured.setup_s:.0f} s; " + ", ".join(
               f"{status} {count:,.0f}" for status, count in sorted(measured.settled.items())), target="-",
               met=None, command=command),
    ]  # fmt: skip
    return result


def run() -> list[Figure]:
    """For `make bench`: without PostgreSQL's binaries the section says why it was not measured."""
    try:
        return figures(measure())
    except pytest.skip.Exception as skipped:
        return [Figure(section=f"Replicas ({WORKFLOWS:,} active workflows over {REPLICAS} replicas)",
                       name="not measured", value=str(skipped), target="-", met=None, command=COMMAND)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark alone (any size) and print its section as `make bench` writes it."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--workflows", type=int, default=WORKFLOWS, help=f"active workflows (default {WORKFLOWS})")
    args = parser.parse_args(argv)
    command = f"python -m tests.bench.replica_bench --workflows {args.workflows}"
    print(render_section(figures(measure(args.workflows), command)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
