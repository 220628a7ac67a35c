"""`python -m performance_agent demo` end to end, as a newcomer runs it: output, exit code, and what it leaves behind.

Leftovers are checked from the outside: listening TCP sockets from /proc/net/tcp{,6} (the ports
the demo printed must not be listening afterwards, and no socket may have appeared on them), and
processes from /proc/*/environ (nothing may still run with the demo's throwaway SQLite file).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_S = 240.0
LISTEN = "0A"


def listening_ports() -> set[int]:
    """Ports with a socket in LISTEN state, any address, IPv4 and IPv6."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def processes_using(marker: str) -> list[int]:
    """Pids of live processes whose environment or command line mentions `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in text:
            found.append(int(entry.name))
    return found


def demo_ports(output: str) -> set[int]:
    """Every 127.0.0.1 port the demo printed: the agent, each simulated server and the simulator hub."""
    return {int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", output)} - {8000}


def workdir_of(output: str) -> str:
    match = re.search(r"SQLite (\S+)/agent\.db", output)
    assert match, output
    return match.group(1)


def demo_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "performance_agent", "demo", *extra]


def demo_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PERF_AGENT_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def assert_nothing_left(output: str, listening_before: set[int]) -> None:
    ports = demo_ports(output)
    assert len(ports) >= 9, f"expected the agent, 7 servers and the hub in the output, got {sorted(ports)}"
    assert not ports & listening_before, "the demo's ports were free when it started"
    assert not ports & listening_ports(), "a port the demo used is still listening"
    workdir = workdir_of(output)
    assert processes_using(workdir) == [], f"a process still uses {workdir}"
    assert not Path(workdir).exists(), "the throwaway directory was removed"


def test_the_demo_tells_the_whole_story_and_leaves_nothing_behind() -> None:
    before = listening_ports()
    finished = subprocess.run(
        demo_command(),
        cwd=REPO_ROOT,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = finished.stdout
    assert finished.returncode == 0, output + finished.stderr
    assert finished.stderr == "", finished.stderr
    # analysis: KV pressure on the chat group, with its evidence, and nowhere else. The servers'
    # heavy-tailed latencies (7% of requests 6x slower) may add a decode_latency finding anywhere.
    for index in range(4):
        assert re.search(
            rf"<- 200 vllm-chat-{index}: \d bottlenecks?: kv_cache_pressure \((medium|high|critical)\)", output
        ), output
    assert re.search(r"KV pressure: load\.kv_cache_usage 0\.9\d* >= 0\.9", output), output
    assert "=> KV-cache pressure on the vLLM 'chat' group (4 servers) only." in output
    batch = re.search(r"<- 200 vllm-batch-0: (.*)", output)
    assert batch is not None
    assert "kv_cache_pressure" not in batch.group(1)
    # every request is shown with its method and path
    for request in (
        "-> POST /api/v1/instances",
        "-> POST /api/v1/collect/vllm",
        "-> POST /api/v1/collect/tgi",
        "-> POST /api/v1/collect/sglang",
        "-> POST /api/v1/analyze",
        "-> POST /api/v1/optimize",
        "-> POST /api/v1/workflows",
    ):
        assert request in output
    assert re.search(r"-> POST /api/v1/workflows/[\w-]+/approve \[as approver\]", output)
    # the recommended change completes through every stage
    assert re.search(r"=> rolling out 'kv_cache:[\w-]+'", output)
    assert "pending_approval" in output
    assert "approved by demo-lead: capturing_baseline" in output
    for stage in ("stage 1/3 (10%, 1 of 4 changed) monitoring", "stage 2/3 (50%, 2 of 4 changed) monitoring"):
        assert stage in output
    assert "<- 200 completed: 4 of 4 servers changed" in output
    before_after = re.search(r"KV cache usage of vllm-chat-0: (\d+)% before, (\d+)% after", output)
    assert before_after
    assert int(before_after.group(2)) < int(before_after.group(1))
    # the harmful one is rolled back by itself on the judge's evidence, with the counts behind it
    assert "<- 200 rolled back automatically: evidence against the canary: " in output
    assert re.search(r"\(max_\w+ [\d.]+\): evidence \S+ of threshold \S+ CROSSED", output), output
    assert re.search(r"canary [\d.e+]+/[\d.e+]+ vs reference [\d.e+]+/[\d.e+]+ \(margin [\d.]+\)", output), output
    assert "rollback_complete    rolling_back -> rolled_back" in output
    # and the way onward
    assert "Where to look next:" in output
    assert "/schema/redoc" in output
    assert "make run" in output
    assert re.search(r"Demo finished in \d+\.\d s\.", output)
    assert_nothing_left(output, before)


def _run_until(marker: str, signum: int) -> tuple[int, str, set[int]]:
    """Start the demo, send `signum` once `marker` is printed; its exit code, output, and ports listening before."""
    before = listening_ports()
    process = subprocess.Popen(
        demo_command(), cwd=REPO_ROOT, env=demo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    watchdog = threading.Timer(RUN_TIMEOUT_S, process.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if marker in line:
                process.send_signal(signum)
                break
        rest, _ = process.communicate(timeout=60)
    finally:
        watchdog.cancel()
    return process.returncode, "".join(lines) + rest, before


@pytest.mark.parametrize(
    ("signum", "marker"),
    [
        (signal.SIGINT, "stage 2/3 (50%"),  # Ctrl-C in the middle of the first rollout
        (signal.SIGTERM, "-> POST /api/v1/analyze"),
    ],
    ids=["sigint-mid-rollout", "sigterm-mid-analysis"],
)
def test_a_signal_mid_run_stops_promptly_and_cleans_up(signum: int, marker: str) -> None:
    code, output, before = _run_until(marker, signum)
    name = signal.Signals(signum).name
    assert code == 128 + signum, output
    assert f"Interrupted ({name}): stopping the agent and the simulated servers." in output
    assert re.search(r"Stopped: agent \(pid \d+, after SIGTERM\); 7 simulated servers; removed ", output), output
    assert "Demo finished" not in output
    assert "Where to look next" not in output
    assert_nothing_left(output, before)


def test_a_step_that_fails_exits_non_zero_with_the_reason_and_cleans_up() -> None:
    """The agent cannot listen on a port someone else holds: the demo says so, shows its log, and stops."""
    with socket_held() as port:
        finished = subprocess.run(
            demo_command("--agent-port", str(port)),
            cwd=REPO_ROOT,
            env=demo_env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert re.search(r"demo FAILED: the agent exited during start-up \(exit code [1-9]\d*\)\n", finished.stderr)
    assert "agent log (last lines):" in finished.stderr
    assert "address already in use" in finished.stderr.lower()
    assert "Demo finished" not in finished.stdout
    assert "== 2. Register" not in finished.stdout
    workdir = workdir_of(finished.stdout)
    assert processes_using(workdir) == []
    assert not Path(workdir).exists()


def test_bad_arguments_exit_2_without_starting_anything() -> None:
    finished = subprocess.run(
        demo_command("--agent-port", "70000"), env=demo_env(), capture_output=True, text=True, check=False, timeout=60
    )
    assert finished.returncode == 2
    assert "--agent-port must be within 0..65535" in finished.stderr
    assert finished.stdout == ""


@contextlib.contextmanager
def socket_held() -> Iterator[int]:
    """A listening socket on 127.0.0.1 for the duration of the block; its port."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])
