"""Rollout speed and scale: how fast a regression is rolled back, and what 1,000 active workflows cost.

Reaction time runs the real reconciler (`build_reconciler`: health windows judged by the
sequential judge, signed webhook through the outbox) against a simulated vLLM fleet of 4 on one
manual clock, background collection off, so every window ends on a new scrape: a harmless change
reaches stage 0 monitoring and passes two windows, then at a chosen moment the canary's engine
slows down 4x (`latency_regression`, as a bad flag would), and time moves one reconciler tick
(1 s) at a time until the receiver gets the rollback webhook. The regression is injected at
several phases of the window cycle; the time is simulated, so the figure is in monitor
intervals. Guardrails and judge settings are the defaults. With background collection on, a
window may instead end on a stored reading up to `min(interval_s,
PERF_AGENT_WORKFLOW_MAX_READING_AGE_S)` old (docs/rollout.md, "Health windows from stored
readings"), which can add up to that age (one collector interval by default) to these figures.

Scale measures that production path: one agent on a SQLite file in real time, its background
collector (`Collector.run`, `PERF_AGENT_SCRAPE_INTERVAL_S` 15 s) scraping 2,000 simulated vLLM
servers served by a separate simulator process, as real servers would be, and 1,000 workflows
(a canary and a control instance each, default monitor interval 15 s, tick 1 s) whose windows
end on the collector's fresh stored readings; the scrapes the reconciler still takes itself are
counted. The collector runs one interval before the workflows start, so every instance has a
reading, and workflows start in 15 groups a second apart, as independent rollouts would, so
their windows spread over the interval. The changes are harmless (identical servers) and the
guardrails and judge are the defaults: the sequential judge needs evidence beyond the tolerated
slowdown to roll back, so every workflow must still be monitoring at the end (a rolled-back one
would also stop costing). The A/A check at baseline capture may pause a few (up to 1%; the first
full run paused 1 of 1,000, its canary's TTFT already slower before any change): those are
counted and reported, not measured. Once all are monitoring, each tick is measured over two intervals:
the reconciler's CPU (the tick, the status gauge's count and what they start until the next
tick, its database work included), the whole process's CPU and the wall time. The collector
shares the event loop and the database thread, so `CpuLedger` charges each callback and
database call to its owner; the collector's CPU is reported on its own, as it is the fleet-wide
collection the agent does with or without workflows. Resident memory is the whole process's
(collector, reconciler, workflows), read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from performance_agent.clock import utc
from performance_agent.composition import build_agent
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.metrics.collection import CollectionService
from performance_agent.security import ApiKeyRing
from performance_agent.simulator.fleet import ManualClock, start_simulator
from performance_agent.storage.sql import SqlConnection, SqlDatabase
from performance_agent.workflows.schemas import WorkflowCreate
from tests.bench.figures import Figure, render_section
from tests.conftest import make_settings
from tests.paths import REPO_ROOT
from tests.rollout_support import ReconcilerHarness, WebhookReceiver, fleet_forwarder, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from performance_agent.context import AgentContext
    from performance_agent.metrics.snapshot import InstanceSnapshot
    from performance_agent.simulator.fleet import SimulatedFleet
    from performance_agent.workflows.reconciler import Reconciler

COMMAND = "make bench  (tests/bench/rollout_bench.py)"
INTERVAL_S = 15.0
TICK_S = 1.0
PHASES = (0.05, 0.3, 0.55, 0.8, 0.95)  # of the interval, how long before a window closes the regression starts
WORKFLOWS = 1000
GROUPS = 15
MEASURED_TICKS = 30
SETUP_LIMIT_S = 600.0
SETTLED = ("monitoring", "paused")
#: Share of the harmless changes the A/A check may pause (1%); more means the check or the simulator misbehaves.
MAX_AA_PAUSED_SHARE = 0.01
T = TypeVar("T")


# ----------------------------------------------------------------------------- reaction time


async def _reaction(
    harness: ReconcilerHarness, fleet: SimulatedFleet, receiver: WebhookReceiver, phase: float
) -> tuple[float, float]:
    """Seconds from the regression to the rollback webhook, and the wall seconds of the tick that sent it."""
    clock = harness.clock
    ids = [handle.instance_id for handle in fleet.instances]
    body = {
        "instance_ids": ids,
        "changes": {"max_num_seqs": 128},
        "actuator": {"type": "webhook", "url": receiver.url},
        "monitor": {"duration_s": 3600, "interval_s": INTERVAL_S, "warmup_s": 30},
    }
    workflow_id = (await harness.start(body)).workflow_id

    def rollbacks() -> int:
        return sum(
            1
            for d in receiver.accepted()
            if d.payload["action"] == "rollback" and d.payload["workflow_id"] == workflow_id
        )

    while True:  # until two windows passed: the canary is healthy before the regression
        await harness.step(TICK_S)
        stored = await harness.workflows.get(workflow_id)
        assert stored is not None
        doc = stored.doc
        if doc.status not in ("capturing_baseline", "applying", "monitoring"):
            raise AssertionError(f"the harmless change ended up {doc.status}: {doc.status_reason}")
        if doc.status == "monitoring" and doc.progress is not None and doc.progress.passing_windows >= 2:
            break
    assert doc.next_window_at is not None
    regression_at = doc.next_window_at + INTERVAL_S - phase * INTERVAL_S
    while clock() + TICK_S <= regression_at:
        await harness.step(TICK_S)
    clock.advance(regression_at - clock())
    fleet.set_faults(ids[0], latency_regression=4.0)
    for _ in range(int(6 * INTERVAL_S / TICK_S)):
        clock.advance(TICK_S)
        started = time.perf_counter()
        await harness.reconciler.tick()
        wall = time.perf_counter() - started
        if rollbacks():
            reaction = clock() - regression_at
            fleet.set_faults(ids[0], clear=True)
            await harness.run_until(workflow_id, {"rolled_back"}, step_s=TICK_S)
            return reaction, wall
    view, _ = await harness.service.get(workflow_id)
    recent = [(w.verdict, w.reasons) for w in (view.windows or [])][-6:]
    raise AssertionError(f"no rollback webhook within six intervals of the regression: {view.status} {recent}")


def reaction_times() -> list[tuple[float, float, float]]:
    """(phase, reaction seconds, wall seconds of the deciding tick) per phase."""
    clock = ManualClock()
    results = []
    with start_simulator("vllm", 4, clock=clock) as fleet:
        clock.advance(120)
        receiver = WebhookReceiver(forward=fleet_forwarder(fleet)).start()

        async def scenario() -> None:
            async with ReconcilerHarness(clock, workflow_tick_s=TICK_S) as harness:
                await harness.register_fleet(fleet, max_num_seqs=256)
                for phase in PHASES:
                    seconds, wall = await _reaction(harness, fleet, receiver, phase)
                    results.append((phase, seconds, wall))

        try:
            asyncio.run(scenario())
        finally:
            receiver.stop()
    return results


# ------------------------------------------------------------------------------------ scale


@contextlib.contextmanager
def simulator_process(count: int) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "performance_agent", "simulate", "--engine", "vllm", "--count", str(count),
               "--single-port", "--base-port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/i/vllm-{count - 1}/metrics", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.5)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


_OWNER: contextvars.ContextVar[str] = contextvars.ContextVar("bench_cpu_owner", default="reconciler")


class CpuLedger:
    """CPU seconds of this process by owner: "collector" for the collector's task and what it spawns, else "reconciler".

    The collector and the reconciler share the agent's event loop and database thread, so the
    process clock cannot tell them apart. Every event-loop callback (`asyncio.Handle._run`, a task
    step among them) is charged to the owner in its context, and every database call to the
    owner of the task that made it, each on its own thread's CPU clock.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"collector": 0.0, "reconciler": 0.0}
        #: Scrapes started (`CollectionService.scrape`, any outcome) by owner.
        self.scrapes: dict[str, int] = {"collector": 0, "reconciler": 0}

    def charge(self, owner: str, since: float) -> None:
        self.seconds[owner] = self.seconds.get(owner, 0.0) + time.thread_time() - since

    @contextlib.contextmanager
    def installed(self, database: SqlDatabase) -> Iterator[None]:
        ledger = self
        original_handle_run = asyncio.Handle._run
        original_database_run = database.run
        original_scrape = CollectionService.scrape

        def handle_run(handle: asyncio.Handle) -> None:
            started = time.thread_time()
            try:
                original_handle_run(handle)
            finally:
                ledger.charge(handle._context.get(_OWNER, "reconciler"), started)  # type: ignore[attr-defined]

        async def database_run(work: Callable[[SqlConnection], T]) -> T:
            owner = _OWNER.get()

            def charged(connection: SqlConnection) -> T:
                started = time.thread_time()
                try:
                    return work(connection)
                finally:
                    ledger.charge(owner, started)

            return await original_database_run(charged)

        async def scrape(service: CollectionService, *args: Any, **kwargs: Any) -> InstanceSnapshot:
            owner = _OWNER.get()
            ledger.scrapes[owner] = ledger.scrapes.get(owner, 0) + 1
            return await original_scrape(service, *args, **kwargs)

        asyncio.Handle._run = handle_run  # type: ignore[method-assign,assignment]
        CollectionService.scrape = scrape  # type: ignore[method-assign,assignment]
        database.run = database_run  # type: ignore[method-assign]
        try:
            yield
        finally:
            asyncio.Handle._run = original_handle_run  # type: ignore[method-assign]
            database.run = original_database_run  # type: ignore[method-assign]
            CollectionService.scrape = original_scrape  # type: ignore[method-assign]


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(current, peak) resident memory of a process (default: this one) in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class ScaleFigures(msgspec.Struct):
    workflows: int
    paused_before_change: int
    rss_before_mb: float
    rss_mb: float
    peak_rss_mb: float
    cpu_per_tick_s: list[float]
    process_cpu_per_tick_s: list[float]
    wall_per_tick_s: list[float]
    due_per_tick: list[int]
    collector_scrapes: int
    reconciler_scrapes: int
    collector_cpu_per_s: float
    setup_s: float


async def _tick_every_second(reconciler: Reconciler, ticks: int) -> None:
    for _ in range(ticks):
        started = time.monotonic()
        await reconciler.tick()
        await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))


async def _register(agent: AgentContext, endpoint: str, count: int) -> None:
    for index in range(count):
        path = f"/i/vllm-{index}/metrics"
        spec = msgspec.convert({"engine": "vllm", "endpoint": endpoint, "metrics_path": path}, InstanceSpec)
        await agent.instances.create(f"vllm-{index}", spec, utc(time.time()))


async def _start_workflows(agent: AgentContext, receiver_url: str, workflows: int) -> list[str]:
    """Harmless changes in `GROUPS` groups a second apart, as independent rollouts start, spreading their windows."""
    per_group = -(-workflows // GROUPS)
    created: list[str] = []
    for group in range(GROUPS):
        for index in range(group * per_group, min((group + 1) * per_group, workflows)):
            body = {
                "instance_ids": [f"vllm-{2 * index}", f"vllm-{2 * index + 1}"],
                "changes": {"max_num_seqs": 128},
                "actuator": {"type": "webhook", "url": receiver_url},
                "monitor": {"duration_s": 7200, "warmup_s": 5},
            }
            result = await agent.workflows.create(msgspec.convert(body, WorkflowCreate), actor="ops",
                                                  idempotency_key=None)  # fmt: skip
            created.append(result.workflow.workflow_id)
        await _tick_every_second(agent.reconciler, 1)
    return created


async def _left_the_rollout(agent: AgentContext, created: list[str]) -> str:
    """Which workflows are not monitoring, and why (their `status_reason`), for the failure message."""
    reasons: dict[tuple[str, str | None], int] = {}
    for workflow_id in created:
        stored = await agent.storage.workflows.get(workflow_id)
        assert stored is not None
        if stored.doc.status != "monitoring":
            key = (stored.doc.status, stored.doc.status_reason)
            reasons[key] = reasons.get(key, 0) + 1
    return "; ".join(f"{count} x {status}: {reason}" for (status, reason), count in reasons.items())


async def _scale(endpoint: str, database: str, workflows: int) -> ScaleFigures:
    receiver = WebhookReceiver().start()
    settings = make_settings(database=database, scrape_background=True, scrape_interval_s=INTERVAL_S,
                             workflow_tick_s=TICK_S)  # fmt: skip
    agent = build_agent(settings, ApiKeyRing([]))
    await agent.storage.open()
    ledger = CpuLedger()
    started = time.monotonic()
    collector_context = contextvars.copy_context()
    collector_context.run(_OWNER.set, "collector")
    collector: asyncio.Task[None] | None = None
    try:
        storage = agent.storage
        reconciler = agent.reconciler
        await _register(agent, endpoint, 2 * workflows)
        # The agent's collector loop (`Collector.run`, as `AgentContext.start` runs it), charged to "collector".
        collector = asyncio.create_task(agent.collector.run(lambda: None), context=collector_context)
        await asyncio.sleep(INTERVAL_S + 2 * TICK_S)  # every instance has a stored reading when the workflows start
        rss_before, _ = rss_mb()
        created = await _start_workflows(agent, receiver.url, workflows)
        # A workflow the A/A check pauses before any change (its canary cohort already differs) is the
        # judge at work, not a failure of the bench; it stops costing, so it is counted and left out.
        while True:
            counts = await storage.workflows.count_by_status()
            if sum(counts.get(status, 0) for status in SETTLED) == workflows:
                break
            if (
                set(counts) - {*SETTLED, "capturing_baseline", "applying"}
                or counts.get("paused", 0) > MAX_AA_PAUSED_SHARE * workflows
            ):
                raise AssertionError(f"workflows left the rollout during setup: {counts}: "
                                     f"{await _left_the_rollout(agent, created)}")  # fmt: skip
            if time.monotonic() - started > SETUP_LIMIT_S:
                raise AssertionError(f"setup took over {SETUP_LIMIT_S:g} s: {counts}: "
                                     f"{await _left_the_rollout(agent, created)}")  # fmt: skip
            await _tick_every_second(reconciler, 1)
        # Each opens its first health window: after its warm-up, on the collector's next reading.
        await _tick_every_second(reconciler, int(2 * INTERVAL_S))
        setup_s = time.monotonic() - started
        cpu, process_cpu, wall, due = [], [], [], []
        with ledger.installed(storage.database):
            collector_before = ledger.seconds["collector"]
            measured_from = time.monotonic()
            for _ in range(MEASURED_TICKS):
                tick_started = time.monotonic()
                reconciler_before = ledger.seconds["reconciler"]
                process_before = time.process_time()
                processed = await reconciler.tick()
                await storage.workflows.count_by_status()  # the loop publishes the status gauge every tick
                wall.append(time.monotonic() - tick_started)
                due.append(len(processed))
                await asyncio.sleep(max(0.0, TICK_S - wall[-1]))
                # Charged per tick period: what the reconciler's tick and its follow-ups cost until the next one.
                cpu.append(ledger.seconds["reconciler"] - reconciler_before)
                process_cpu.append(time.process_time() - process_before)
            elapsed = time.monotonic() - measured_from
            collector_cpu_per_s = (ledger.seconds["collector"] - collector_before) / elapsed
        counts = await storage.workflows.count_by_status()
        paused = counts.get("paused", 0)
        if counts.get("monitoring", 0) + paused != workflows or paused > MAX_AA_PAUSED_SHARE * workflows:
            raise AssertionError(f"every workflow not paused at baseline should still be monitoring: {counts}: "
                                 f"{await _left_the_rollout(agent, created)}")  # fmt: skip
        rss, peak = rss_mb()
        return ScaleFigures(
            workflows=workflows,
            paused_before_change=paused,
            rss_before_mb=rss_before,
            rss_mb=rss,
            peak_rss_mb=peak,
            cpu_per_tick_s=cpu,
            process_cpu_per_tick_s=process_cpu,
            wall_per_tick_s=wall,
            due_per_tick=due,
            collector_scrapes=ledger.scrapes["collector"],
            reconciler_scrapes=ledger.scrapes["reconciler"],
            collector_cpu_per_s=collector_cpu_per_s,
            setup_s=setup_s,
        )
    finally:
        if collector is not None:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        receiver.stop()
        await agent.clients.aclose()
        await agent.storage.close()


def scale(workflows: int = WORKFLOWS) -> ScaleFigures:
    with tempfile.TemporaryDirectory(prefix="perf-agent-bench-") as tmp, simulator_process(2 * workflows) as endpoint:
        return asyncio.run(_scale(endpoint, f"{tmp}/rollout.db", workflows))


# ------------------------------------------------------------------------------------ report


def _percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def reaction_figures() -> list[Figure]:
    reactions = reaction_times()
    section = f"Rollout reaction (simulated vLLM fleet of 4, monitor interval {INTERVAL_S:g} s, tick {TICK_S:g} s)"
    worst = max(seconds for _, seconds, _ in reactions)
    wall = max(w for _, _, w in reactions)
    limit = 2 * INTERVAL_S + TICK_S
    per_phase = ", ".join(f"{phase:g}: {seconds / INTERVAL_S:.2f}" for phase, seconds, _ in reactions)
    return [
        Figure(section=section, name="regression on the canary's /metrics to rollback webhook, worst of "
               f"{len(reactions)} phases", value=f"{worst / INTERVAL_S:.2f} intervals ({worst:.0f} s)",
               target="<= 2 intervals + one scrape (tick)", met=worst <= limit, command=COMMAND),
        Figure(section=section, name="per phase (fraction of the window left when it starts: intervals)",
               value=per_phase, target="-", met=None, command=COMMAND),
        Figure(section=section, name="wall time of the tick that scraped, judged and sent the rollback",
               value=f"{wall * 1000:.0f} ms", target="-", met=None, command=COMMAND),
    ]  # fmt: skip


def scale_figures(measured: ScaleFigures, command: str = COMMAND) -> list[Figure]:
    section = (f"Rollout scale ({measured.workflows:,} active workflows, {2 * measured.workflows:,} simulated vLLM "
               f"servers in another process scraped by the background collector, interval {INTERVAL_S:g} s, "
               f"tick {TICK_S:g} s, {len(measured.cpu_per_tick_s)} ticks)")  # fmt: skip
    cpu = measured.cpu_per_tick_s
    process_cpu = measured.process_cpu_per_tick_s
    return [
        Figure(section=section, name="reconciler CPU per tick (windows from stored readings): max / p95 / median",
               value=f"{max(cpu):.2f} / {_percentile(cpu, 0.95):.2f} / {statistics.median(cpu):.2f} CPU-s",
               target="<= 1 CPU-s (every tick)", met=max(cpu) <= 1.0, command=command),
        Figure(section=section, name="background collector CPU (all servers every interval), mean",
               value=f"{measured.collector_cpu_per_s:.2f} CPU-s per s", target="-", met=None, command=command),
        Figure(section=section, name="whole process CPU per tick (reconciler + collector): max / median",
               value=f"{max(process_cpu):.2f} / {statistics.median(process_cpu):.2f} CPU-s", target="-", met=None,
               command=command),
        Figure(section=section, name="scrapes during the ticks: collector / reconciler (readings not fresh enough)",
               value=f"{measured.collector_scrapes:,} / {measured.reconciler_scrapes:,}", target="-", met=None,
               command=command),
        Figure(section=section, name="wall time per tick: max / median", value=f"{max(measured.wall_per_tick_s):.2f} / "
               f"{statistics.median(measured.wall_per_tick_s):.2f} s", target="-", met=None, command=command),
        Figure(section=section, name="workflows judged per tick: max / median",
               value=f"{max(measured.due_per_tick)} / {statistics.median(measured.due_per_tick):g}", target="-",
               met=None, command=command),
        Figure(section=section, name="resident memory (whole process) after the ticks / peak",
               value=f"{measured.rss_mb:.0f} MB / {measured.peak_rss_mb:.0f} MB "
               f"(collector running, before the workflows: {measured.rss_before_mb:.0f} MB)", target="< 250 MB",
               met=measured.peak_rss_mb < 250, command=command),
        Figure(section=section, name="harmless changes paused by the A/A check at baseline capture (not measured)",
               value=f"{measured.paused_before_change} of {measured.workflows:,}", target="-", met=None,
               command=command),
        Figure(section=section, name="setup (registration, one collector interval, workflows to monitoring)",
               value=f"{measured.setup_s:.0f} s", target="-", met=None, command=command),
    ]  # fmt: skip


def run() -> list[Figure]:
    os.environ.setdefault("PERF_AGENT_LOG_LEVEL", "WARNING")
    return [*reaction_figures(), *scale_figures(scale())]


def main(argv: list[str] | None = None) -> int:
    """Run the scale measurement alone (any size) and print its section as `make bench` writes it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workflows", type=int, default=WORKFLOWS, help=f"active workflows (default {WORKFLOWS})")
    args = parser.parse_args(argv)
    os.environ.setdefault("PERF_AGENT_LOG_LEVEL", "WARNING")
    command = f"python -m tests.bench.rollout_bench --workflows {args.workflows}"
    print(render_section(scale_figures(scale(args.workflows), command)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
