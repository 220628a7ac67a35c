"""Rollout speed and scale: how fast a regression is rolled back, and what 1,000 active workflows cost.

Reaction time runs the real reconciler (`build_reconciler`: scrapes over HTTP, health gate,
signed webhook through the outbox) against a simulated vLLM fleet on one manual clock: a good
change reaches stage 0 monitoring, then at a chosen moment the canary's engine slows down
(`latency_regression`, as a bad flag would), and time moves one reconciler tick (1 s) at a
time until the receiver gets the rollback webhook. The regression is injected at several
phases of the health-window cycle; the time is simulated, so the figure is in monitor intervals.
Guardrails are the defaults except `min_samples` (see `GUARDRAILS`).

Scale runs 1,000 workflows (a canary and a control instance each, so 2,000 simulated servers
served by a separate simulator process, as real servers would be) on a SQLite file in real
time with the default monitor interval (15 s) and tick (1 s). Workflows start in 15 groups a
second apart, as independent rollouts would, so their health windows spread over the interval.
Once all are monitoring, every tick's CPU seconds (this process: reconciler, scrapes, SQLite)
and wall time are measured over two intervals; resident memory is read from /proc. Every window
is scraped and judged, but `consecutive_failures` is set out of reach: between two equal
simulated servers the p99 of a 15 s window (about 120 requests) differs by more than the default
20% often enough to roll back a harmless change, and a rolled-back workflow would stop costing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from performance_agent.clock import utc
from performance_agent.composition import build_agent
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.security import ApiKeyRing
from performance_agent.simulator.fleet import ManualClock, start_simulator
from performance_agent.workflows.schemas import WorkflowCreate
from tests.bench.figures import Figure
from tests.conftest import make_settings
from tests.paths import REPO_ROOT
from tests.rollout_support import ReconcilerHarness, WebhookReceiver, fleet_forwarder, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from performance_agent.simulator.fleet import SimulatedFleet
    from performance_agent.workflows.reconciler import Reconciler

COMMAND = "make bench  (tests/bench/rollout_bench.py)"
INTERVAL_S = 15.0
TICK_S = 1.0
PHASES = (0.05, 0.3, 0.55, 0.8, 0.95)  # of the interval, how long before a window closes the regression starts
WORKFLOWS = 1000
GROUPS = 15
MEASURED_TICKS = 30
#: Default guardrails but `min_samples`: a 4x slower canary serves ~60 requests a window here, under the
#: default 100, which would make its windows inconclusive rather than failed (see the report).
GUARDRAILS = {"min_samples": 40}


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
        "guardrails": GUARDRAILS,
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


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class ScaleFigures(msgspec.Struct):
    rss_before_mb: float
    rss_mb: float
    peak_rss_mb: float
    cpu_per_tick_s: list[float]
    wall_per_tick_s: list[float]
    due_per_tick: list[int]
    setup_s: float


async def _tick_every_second(reconciler: Reconciler, ticks: int) -> None:
    for _ in range(ticks):
        started = time.monotonic()
        await reconciler.tick()
        await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))


async def _scale(endpoint: str, database: str) -> ScaleFigures:
    rss_before, _ = _rss_mb()
    receiver = WebhookReceiver().start()
    settings = make_settings(database=database, scrape_background=False, workflow_tick_s=TICK_S)
    agent = build_agent(settings, ApiKeyRing([]))
    await agent.storage.open()
    started = time.monotonic()
    try:
        workflows = agent.storage.workflows
        reconciler = agent.reconciler
        service = agent.workflows
        for index in range(2 * WORKFLOWS):
            path = f"/i/vllm-{index}/metrics"
            spec = msgspec.convert({"engine": "vllm", "endpoint": endpoint, "metrics_path": path}, InstanceSpec)
            await agent.instances.create(f"vllm-{index}", spec, utc(time.time()))
        per_group = -(-WORKFLOWS // GROUPS)
        created: list[str] = []
        for group in range(GROUPS):  # independent rollouts start at different moments
            for index in range(group * per_group, min((group + 1) * per_group, WORKFLOWS)):
                body = {
                    "instance_ids": [f"vllm-{2 * index}", f"vllm-{2 * index + 1}"],
                    "changes": {"max_num_seqs": 128},
                    "actuator": {"type": "webhook", "url": receiver.url},
                    "monitor": {"duration_s": 7200, "warmup_s": 5},
                    "guardrails": {"consecutive_failures": 1000},  # judged every window, never rolled back
                }
                result = await service.create(msgspec.convert(body, WorkflowCreate), actor="ops", idempotency_key=None)
                created.append(result.workflow.workflow_id)
            await _tick_every_second(reconciler, 1)
        while (counts := await workflows.count_by_status()).get("monitoring", 0) < WORKFLOWS:
            if set(counts) - {"monitoring", "capturing_baseline", "applying"}:
                raise AssertionError(f"workflows left the rollout during setup: {counts}")
            await _tick_every_second(reconciler, 1)
        await _tick_every_second(reconciler, int(INTERVAL_S))  # each opens its first health window
        setup_s = time.monotonic() - started
        cpu, wall, due = [], [], []
        for _ in range(MEASURED_TICKS):
            tick_started = time.monotonic()
            cpu_started = time.process_time()
            processed = await reconciler.tick()
            await workflows.count_by_status()  # the loop publishes the status gauge every tick
            cpu.append(time.process_time() - cpu_started)
            wall.append(time.monotonic() - tick_started)
            due.append(len(processed))
            await asyncio.sleep(max(0.0, TICK_S - wall[-1]))
        counts = await workflows.count_by_status()
        if counts.get("monitoring", 0) != WORKFLOWS:
            reasons = {(await workflows.get(i)).doc.status_reason for i in created[:50]}  # type: ignore[union-attr]
            raise AssertionError(f"every workflow should still be monitoring: {counts} {reasons}")
        rss, peak = _rss_mb()
        return ScaleFigures(rss_before, rss, peak, cpu, wall, due, setup_s)
    finally:
        receiver.stop()
        await agent.clients.aclose()
        await agent.storage.close()


def scale() -> ScaleFigures:
    with tempfile.TemporaryDirectory(prefix="perf-agent-bench-") as tmp, simulator_process(2 * WORKFLOWS) as endpoint:
        return asyncio.run(_scale(endpoint, f"{tmp}/rollout.db"))


# ------------------------------------------------------------------------------------ report


def run() -> list[Figure]:
    os.environ.setdefault("PERF_AGENT_LOG_LEVEL", "WARNING")
    reactions = reaction_times()
    section = f"Rollout reaction (simulated vLLM fleet of 4, monitor interval {INTERVAL_S:g} s, tick {TICK_S:g} s)"
    worst = max(seconds for _, seconds, _ in reactions)
    wall = max(w for _, _, w in reactions)
    limit = 2 * INTERVAL_S + TICK_S
    per_phase = ", ".join(f"{phase:g}: {seconds / INTERVAL_S:.2f}" for phase, seconds, _ in reactions)
    figures = [
        Figure(section=section, name="regression on the canary's /metrics to rollback webhook, worst of "
               f"{len(reactions)} phases", value=f"{worst / INTERVAL_S:.2f} intervals ({worst:.0f} s)",
               target="<= 2 intervals + one scrape (tick)", met=worst <= limit, command=COMMAND),
        Figure(section=section, name="per phase (fraction of the window left when it starts: intervals)",
               value=per_phase, target="-", met=None, command=COMMAND),
        Figure(section=section, name="wall time of the tick that scraped, judged and sent the rollback",
               value=f"{wall * 1000:.0f} ms", target="-", met=None, command=COMMAND),
    ]  # fmt: skip
    measured = scale()
    section = (f"Rollout scale ({WORKFLOWS:,} active workflows, {2 * WORKFLOWS:,} simulated vLLM servers in another "
               f"process, interval {INTERVAL_S:g} s, tick {TICK_S:g} s, {MEASURED_TICKS} ticks)")  # fmt: skip
    cpu = measured.cpu_per_tick_s
    figures += [
        Figure(section=section, name="reconciler CPU per tick: max / median", value=f"{max(cpu):.2f} / "
               f"{statistics.median(cpu):.2f} CPU-s", target="< 1 CPU-s", met=max(cpu) < 1.0, command=COMMAND),
        Figure(section=section, name="wall time per tick: max / median", value=f"{max(measured.wall_per_tick_s):.2f} / "
               f"{statistics.median(measured.wall_per_tick_s):.2f} s", target="-", met=None, command=COMMAND),
        Figure(section=section, name="workflows judged per tick: max / median",
               value=f"{max(measured.due_per_tick)} / {statistics.median(measured.due_per_tick):g}", target="-",
               met=None, command=COMMAND),
        Figure(section=section, name="resident memory (whole process) after the ticks / peak",
               value=f"{measured.rss_mb:.0f} MB / {measured.peak_rss_mb:.0f} MB "
               f"(before the workflows: {measured.rss_before_mb:.0f} MB)", target="< 200 MB",
               met=measured.peak_rss_mb < 200, command=COMMAND),
    ]  # fmt: skip
    return figures


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value} (target {figure.target})")
