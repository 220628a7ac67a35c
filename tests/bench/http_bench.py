"""`GET /api/v1/health`: the agent vs a bare Litestar app, same uvicorn settings, driven by wrk.

Runs alternate (agent, bare, agent, bare, ...) so that noise on this shared 2-core machine hits
both sides alike; the median of the rounds is reported. Beside the throughput and p99 ratios
(the targets), the server process's CPU time per request is reported: when other work shares
the cores it moves far less than requests per second do, so it shows what the agent's own
request path costs. Alone: `python -m tests.bench.http_bench`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import TYPE_CHECKING

from tests.bench.figures import Figure
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator

COMMAND = "make bench  (tests/bench/http_bench.py; alone: python -m tests.bench.http_bench)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed and could not be installed with apt-get")
    return found


@contextlib.contextmanager
def serve(factory: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    port = _free_port()
    command = [
        sys.executable, "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-proxy-headers", "--no-server-header",
        "--log-level", "warning",
    ]  # fmt: skip  # the settings of `performance_agent serve` and the Containerfile
    process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}/api/v1/health"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (proc(5): fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wrk(server: tuple[str, int], connections: int, seconds: int) -> dict[str, float]:
    url, pid = server
    ticks = _cpu_ticks(pid)
    out = subprocess.run(
        [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)$", out, flags=re.MULTILINE)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu_us = (_cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK") * 1e6 / requests
    return {"rps": rps, "p50_ms": latency["50"], "p99_ms": latency["99"], "cpu_us": cpu_us}


def run(rounds: int = 3, seconds: int = 5) -> list[Figure]:
    tmp = tempfile.mkdtemp(prefix="perf-agent-bench-")
    agent_env = {"PERF_AGENT_DATABASE": f"{tmp}/agent.db", "PERF_AGENT_LOG_LEVEL": "WARNING"}
    results: dict[str, list[dict[str, float]]] = {"agent32": [], "bare32": [], "agent8": []}
    with (
        serve("performance_agent.app:create_app", agent_env) as agent,
        serve("tests.bench.hello_app:create_app", {}) as bare,
    ):
        wrk(agent, 8, 2)  # warm-up
        wrk(bare, 8, 2)
        for _ in range(rounds):
            results["agent32"].append(wrk(agent, 32, seconds))
            results["bare32"].append(wrk(bare, 32, seconds))
            results["agent8"].append(wrk(agent, 8, seconds))
    shutil.rmtree(tmp, ignore_errors=True)

    def median(key: str, field: str) -> float:
        return statistics.median(r[field] for r in results[key])

    throughput_ratio = median("agent32", "rps") / median("bare32", "rps")
    p99_ratio = median("agent32", "p99_ms") / median("bare32", "p99_ms")
    p50_8, p99_8 = median("agent8", "p50_ms"), median("agent8", "p99_ms")
    cpu_agent, cpu_bare = median("agent32", "cpu_us"), median("bare32", "cpu_us")
    section = "HTTP overhead (GET /api/v1/health, uvicorn uvloop+httptools, 1 worker, wrk -t1)"
    return [
        Figure(section=section, name="agent throughput at 32 connections",
               value=f"{median('agent32', 'rps'):.0f} req/s (bare Litestar: {median('bare32', 'rps'):.0f} req/s)",
               target="-", met=None, command=COMMAND),
        Figure(section=section, name="throughput ratio agent / bare", value=f"{throughput_ratio:.2f}",
               target=">= 0.8", met=throughput_ratio >= 0.8, command=COMMAND),
        Figure(section=section, name="p99 latency ratio agent / bare at 32 connections", value=f"{p99_ratio:.2f}",
               target="<= 1.3", met=p99_ratio <= 1.3, command=COMMAND),
        Figure(section=section, name="server CPU per request at 32 connections, agent / bare",
               value=f"{cpu_agent:.0f} us / {cpu_bare:.0f} us = {cpu_agent / cpu_bare:.2f}x",
               target="-", met=None, command=COMMAND),
        Figure(section=section, name="agent p50 / p99 at 8 connections", value=f"{p50_8:.2f} ms / {p99_8:.2f} ms",
               target="p99 < 10 ms", met=p99_8 < 10, command=COMMAND),
    ]  # fmt: skip


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value} (target {figure.target})")
