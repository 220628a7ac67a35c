"""The agent as a child process, and turning SIGINT/SIGTERM into an orderly stop.

The agent runs as users run it (`python -m performance_agent serve`, uvicorn) in its own session,
so a Ctrl-C in the terminal reaches only the demo, which then stops the agent itself (SIGTERM,
then SIGKILL after a grace period) and waits for it. On Linux the child also asks the kernel to
send it SIGTERM if the demo dies without cleaning up (PR_SET_PDEATHSIG), so not even a
`kill -9` of the demo leaves an agent behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx

from performance_agent.demo.answers import StepFailed

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("AgentProcess", "Interrupted", "free_port")

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 15.0
LOG_TAIL_LINES = 15


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child before exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class AgentProcess:
    """`python -m performance_agent serve` on 127.0.0.1 with a throwaway SQLite file in `workdir`."""

    def __init__(self, workdir: Path, port: int, api_keys: str, *, scrape_interval_s: float, tick_s: float) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.database = workdir / "agent.db"
        self.log_path = workdir / "agent.log"
        env = {name: value for name, value in os.environ.items() if not name.startswith("PERF_AGENT_")}
        env.update(
            {
                "PERF_AGENT_HOST": "127.0.0.1",
                "PERF_AGENT_PORT": str(port),
                "PERF_AGENT_DATABASE": str(self.database),
                "PERF_AGENT_API_KEYS": api_keys,
                "PERF_AGENT_SCRAPE_ALLOWLIST": "127.0.0.1/32",
                "PERF_AGENT_WEBHOOK_ALLOWLIST": "127.0.0.1/32",
                "PERF_AGENT_SCRAPE_INTERVAL_S": str(scrape_interval_s),
                "PERF_AGENT_SCRAPE_TIMEOUT_S": "10",
                "PERF_AGENT_WEBHOOK_TIMEOUT_S": "5",
                "PERF_AGENT_WEBHOOK_BACKOFF_S": "0.2",
                "PERF_AGENT_WORKFLOW_TICK_S": str(tick_s),
                "PERF_AGENT_RATE_LIMIT_PER_MINUTE": "0",
                "PERF_AGENT_RATE_LIMIT_PER_HOUR": "0",
                "PERF_AGENT_LOG_LEVEL": "WARNING",
            }
        )
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "performance_agent", "serve"],
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no agent log)"
        return "\n".join(lines[-LOG_TAIL_LINES:]) or "(the agent log is empty)"

    def wait_ready(self, deadline_s: float = 60.0) -> float:
        """Poll `/api/v1/health/ready` until it answers 200; the seconds it took."""
        started = time.monotonic()
        while True:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise StepFailed(f"the agent exited during start-up (exit code {code})")
            try:
                if httpx.get(f"{self.base_url}/api/v1/health/ready", timeout=2.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > deadline_s:
                raise StepFailed(f"the agent was not ready within {deadline_s:.0f} s")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM (uvicorn's graceful shutdown), SIGKILL after the grace period; the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
