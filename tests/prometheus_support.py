"""Real Prometheus, promtool and Alertmanager (Debian packages `prometheus`, `prometheus-alertmanager`) for tests.

Each server is started from its binary on a free loopback port with its data in the test's
temporary directory, and stopped (SIGTERM, then SIGKILL) when the test ends; the packages'
system services are never used. Without the binaries the calling test is skipped with a message
naming the packages, unless `REQUIRE_PROMETHEUS=1` (set by `.ci/run`), where it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.agent_process import free_port, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ("REQUIRE_PROMETHEUS_ENV", "RunningServer", "alertmanager", "prometheus", "require_binary")

REQUIRE_PROMETHEUS_ENV = "REQUIRE_PROMETHEUS"
PACKAGES = "prometheus prometheus-alertmanager"


def require_binary(name: str) -> str:
    """The binary's path; skips the test (fails it under REQUIRE_PROMETHEUS=1) when it is not installed."""
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} is not installed: apt-get install -y {PACKAGES} (Debian packages)"
    if os.environ.get(REQUIRE_PROMETHEUS_ENV) == "1":
        pytest.fail(f"{REQUIRE_PROMETHEUS_ENV}=1 but {message}")
    pytest.skip(message)


class RunningServer:
    """A started server: its base URL and its log, for assertion messages."""

    def __init__(self, base: str, log: Path) -> None:
        self.base = base
        self.log = log

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(self.base + path, params=params, timeout=5)


@contextlib.contextmanager
def _serve(command: list[str], workdir: Path, port: int, name: str) -> Iterator[RunningServer]:
    log = workdir / f"{name}.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=workdir, stdout=output, stderr=subprocess.STDOUT)
        server = RunningServer(f"http://127.0.0.1:{port}", log)

        def ready() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return server.get("/-/ready").status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(ready, f"{name} to be ready", deadline_s=30)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def prometheus(workdir: Path, config: str) -> Iterator[RunningServer]:
    """Prometheus with `config` (YAML text), its TSDB under `workdir`."""
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config)
    port = free_port()
    command = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with _serve(command, workdir, port, "prometheus") as server:
        yield server


@contextlib.contextmanager
def alertmanager(workdir: Path) -> Iterator[RunningServer]:
    """Alertmanager with one do-nothing receiver, clustering off, its state under `workdir`."""
    binary = require_binary("prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = free_port()
    command = [
        binary,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with _serve(command, workdir, port, "alertmanager") as server:
        yield server
