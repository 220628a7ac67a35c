"""The agent as users run it, `python -m performance_agent serve` (uvicorn) on a SQLite file.

Shared by the e2e suites, the docs tour and the dashboard test, so every one of them starts,
polls and stops the agent the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.paths import REPO_ROOT

#: Settings every test agent starts with: loopback only, no rate limits, quiet logs.
TEST_AGENT_SETTINGS = {
    "PERF_AGENT_HOST": "127.0.0.1",
    "PERF_AGENT_SCRAPE_ALLOWLIST": "127.0.0.1/32",
    "PERF_AGENT_WEBHOOK_ALLOWLIST": "127.0.0.1/32",
    "PERF_AGENT_SCRAPE_TIMEOUT_S": "5",
    "PERF_AGENT_RATE_LIMIT_PER_MINUTE": "0",
    "PERF_AGENT_RATE_LIMIT_PER_HOUR": "0",
    "PERF_AGENT_LOG_LEVEL": "WARNING",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = 60.0) -> Any:
    """Poll until `condition` returns something truthy (returned), failing after the deadline."""
    give_up = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(0.05)


class ServedAgent:
    """One agent process; requests are sent with `headers` (an API key) unless told otherwise."""

    def __init__(
        self,
        database: Path,
        log: Path,
        *,
        headers: Mapping[str, str],
        settings: Mapping[str, str],
        port: int | None = None,
        wait: bool = True,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.headers = dict(headers)
        env = {name: value for name, value in os.environ.items() if not name.startswith("PERF_AGENT_")}
        env.update(TEST_AGENT_SETTINGS)
        env.update(
            {"PYTHONPATH": str(REPO_ROOT), "PERF_AGENT_PORT": str(self.port), "PERF_AGENT_DATABASE": str(database)}
        )
        env.update(settings)
        self.log = log
        self._log_file = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "performance_agent", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_for(self.ready, "the agent to be ready")

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.base}/api/v1/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base + path, params=params, headers=self.headers, timeout=10)

    def post(
        self, path: str, payload: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """With this agent's key unless `headers` name another; extra headers are added to it."""
        return httpx.post(self.base + path, json=payload, headers={**self.headers, **(headers or {})}, timeout=10)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, whatever was in flight is lost."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log_file.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log_file.closed:
            self._log_file.close()
        return int(self.process.returncode)
