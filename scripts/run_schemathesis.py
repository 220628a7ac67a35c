"""Fuzz every operation of the agent with schemathesis, the agent served by uvicorn on 127.0.0.1.

The agent runs with raised rate limits and an allowlist of 127.0.0.1 only (so generated scrape
targets can never leave the machine); settings for the checks live in schemathesis.toml. With
`--coverage` the agent runs under coverage so its lines count toward the gate.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL built above
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the agent did not become ready at {url}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coverage", action="store_true", help="run the agent under coverage")
    parser.add_argument("--max-time", default=os.environ.get("SCHEMATHESIS_MAX_TIME", "300"))
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="perf-agent-fuzz-") as tmp:
        env = {
            **os.environ,
            "PERF_AGENT_HOST": "127.0.0.1",
            "PERF_AGENT_PORT": str(port),
            "PERF_AGENT_DATABASE": str(Path(tmp) / "agent.db"),
            "PERF_AGENT_RATE_LIMIT_PER_MINUTE": "1000000",
            "PERF_AGENT_RATE_LIMIT_PER_HOUR": "10000000",
            "PERF_AGENT_SCRAPE_ALLOWLIST": "127.0.0.1/32",
            "PERF_AGENT_WEBHOOK_ALLOWLIST": "127.0.0.1/32",
            "PERF_AGENT_SCRAPE_INTERVAL_S": "3600",
            "PERF_AGENT_LOG_LEVEL": "ERROR",
        }
        runner = [sys.executable, "-m", "coverage", "run", "-m"] if args.coverage else [sys.executable, "-m"]
        agent = subprocess.Popen([*runner, "performance_agent", "serve"], env=env, cwd=ROOT)  # noqa: S603
        try:
            wait_ready(f"http://127.0.0.1:{port}/api/v1/health/ready", 30)
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"http://127.0.0.1:{port}/schema/openapi.json",
                "--checks",
                CHECKS,
                "--max-time",
                str(args.max_time),
                "--workers",
                "2",
            ]
            return subprocess.call(command, cwd=ROOT)  # noqa: S603
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()


if __name__ == "__main__":
    sys.exit(main())
