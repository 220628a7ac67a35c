"""`python -m performance_agent demo` (`make demo`): start everything, tell the story, stop everything.

Exit codes: 0 the story ran as expected; 1 a step's answer was not what the story expects (the
message says which); 2 bad arguments; 128 + signal number after SIGINT/SIGTERM. Whatever the
outcome, the agent process, the simulated servers and the temporary directory are gone before
`main` returns: cleanup runs with signals deferred, so a second Ctrl-C cannot cut it short.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from performance_agent.demo.answers import StepFailed
from performance_agent.demo.client import APPROVER, OPERATOR, DemoClient
from performance_agent.demo.console import Console
from performance_agent.demo.processes import AgentProcess, Interrupted, free_port
from performance_agent.demo.scenario import (
    CHAT_GROUP,
    KV_PRESSURE,
    MEMBERS,
    TIME_SCALE,
    OffsetClock,
    hub_url,
    new_fleet,
    set_conditions,
)
from performance_agent.demo.story import Story

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType, TracebackType

    from performance_agent.simulator import SimulatedFleet

__all__ = ("main",)

SCRAPE_INTERVAL_S = 1.0
TICK_S = 0.1
NEXT_STEPS = """\
Where to look next:
  docs/rollout.md, docs/analysis.md, docs/optimization.md, docs/metrics.md, docs/configuration.md
  API reference: run `make run`, then open http://127.0.0.1:8000/schema/redoc (ReDoc, served offline)
  make run        serve the agent (settings from PERF_AGENT_*, see docs/configuration.md)
  make demo       this demo again;  python -m performance_agent simulate --engine vllm --count 3
                  serves simulated servers to point the agent at
  make test       every gate;  make eval  detector precision/recall;  make bench  docs/benchmarks.md"""


class StopSignals:
    """SIGINT/SIGTERM raise `Interrupted` until `defer()`; from then on they are only recorded."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._deferring = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if not self._deferring:
            self._deferring = True  # one Interrupted per run: the cleanup that follows must not be cut short
            raise Interrupted(signum)

    def defer(self) -> None:
        self._deferring = True

    def __enter__(self) -> StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


class Resources:
    """What the demo started, stopped in a fixed order: client, agent, simulated servers, temp dir."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="perf-agent-demo-"))
        self.agent: AgentProcess | None = None
        self.fleet: SimulatedFleet | None = None
        self.client: DemoClient | None = None

    def close(self) -> list[str]:
        stopped = []
        if self.client is not None:
            self.client.close()
        if self.agent is not None and self.agent.pid is not None:
            code = self.agent.stop()
            how = "after SIGTERM" if code in (0, -signal.SIGTERM) else f"exit code {code}"
            stopped.append(f"agent (pid {self.agent.pid}, {how})")
        if self.fleet is not None:
            self.fleet.stop()
            stopped.append(f"{len(MEMBERS)} simulated servers")
        shutil.rmtree(self.workdir, ignore_errors=True)
        stopped.append(f"removed {self.workdir}")
        return stopped


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="performance-agent demo",
        description="Start simulated vLLM/TGI/SGLang servers and the agent on 127.0.0.1 and walk through "
        "collect, analyze, optimize and two rollouts using only the public HTTP API.",
    )
    parser.add_argument("--agent-port", type=int, default=0, help="port of the agent (default: a free one)")
    return parser


def _start(resources: Resources, console: Console, port: int) -> tuple[DemoClient, SimulatedFleet]:
    keys = {OPERATOR: secrets.token_urlsafe(24), APPROVER: secrets.token_urlsafe(24)}
    api_keys = f"demo-operator:operator:{keys[OPERATOR]},demo-lead:approver:{keys[APPROVER]}"
    console.step("Start simulated servers and the agent on 127.0.0.1")
    agent = AgentProcess(resources.workdir, port, api_keys, scrape_interval_s=SCRAPE_INTERVAL_S, tick_s=TICK_S)
    resources.agent = agent
    agent.start()  # before the simulator's thread exists: the child is forked from a single-threaded process
    console.note(f"agent: `python -m performance_agent serve` (uvicorn) at {agent.base_url}")
    console.note(f"       SQLite {agent.database}; scrapes every {SCRAPE_INTERVAL_S:g} s")
    console.note("       API keys for an operator (demo-operator) and an approver (demo-lead)")
    clock = OffsetClock()
    resources.fleet = fleet = new_fleet(clock)
    fleet.start()
    set_conditions(fleet, clock)
    groups: dict[str, list[str]] = {}
    for member in MEMBERS:
        groups.setdefault(f"{member.engine} '{member.group}'", []).append(member.instance_id)
    for group, ids in groups.items():
        console.note(f"simulated {group}: {', '.join(ids)}")
    console.note(f"simulator hub (where the simulator actuator applies changes): {hub_url(fleet)}")
    console.note(f"the '{CHAT_GROUP}' group has {KV_PRESSURE:.0%} of its KV cache held by long-lived sessions")
    console.note(
        f"the simulator runs {TIME_SCALE:.0f}x faster than the clock, so per-second rates read {TIME_SCALE:.0f}x high"
    )
    took = agent.wait_ready()
    console.note(
        f"agent ready in {took:.1f} s (pid {agent.pid}); while the demo runs, ReDoc is at {agent.base_url}/schema/redoc"
    )
    resources.client = client = DemoClient(agent.base_url, console, keys)
    return client, fleet


def _tell(resources: Resources, console: Console, port: int, signals: StopSignals) -> int:
    """Start everything and run the story; the exit code for an interruption or a failed step."""
    try:
        try:
            client, fleet = _start(resources, console, port)
            Story(client, console, fleet, hub_url(fleet)).run()
        finally:
            signals.defer()
            console.finish_progress()
    except Interrupted as stop:
        console.line()
        console.line(f"Interrupted ({stop}): stopping the agent and the simulated servers.")
        return 128 + stop.signum
    except StepFailed as failure:
        sys.stdout.flush()
        print(f"\ndemo FAILED: {failure}", file=sys.stderr)
        if resources.agent is not None:
            print(f"agent log (last lines):\n{resources.agent.log_tail()}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if not 0 <= args.agent_port <= 65535:
        print("performance-agent demo: --agent-port must be within 0..65535", file=sys.stderr)
        return 2
    console = Console(sys.stdout)
    started = time.monotonic()
    console.line("performance-agent demo: a simulated fleet, the agent, and one story told through its HTTP API.")
    with StopSignals() as signals:
        resources = Resources()
        try:
            outcome = _tell(resources, console, args.agent_port or free_port(), signals)
        finally:
            signals.defer()  # whatever happened (even an unexpected error), stop everything that was started
            stopped = resources.close()
        if outcome == 0 and signals.received:
            outcome = 128 + signals.received[0]
    console.line()
    console.line("Stopped: " + "; ".join(stopped) + ".")
    if outcome == 0:
        console.line(f"Demo finished in {time.monotonic() - started:.1f} s.")
        console.line()
        console.line(NEXT_STEPS)
    return outcome
