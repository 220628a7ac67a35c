"""The image's CMD and HEALTHCHECK, run as written against the real app, without a container engine.

The static test proves the Containerfile is shaped right; this one proves its commands work:
the uvicorn command line starts the factory with the image's environment, the health check
script passes against it and fails without it, SIGTERM stops it cleanly, and the production
default refuses to start without API keys. Only the listening socket differs: a pre-bound
127.0.0.1 socket (``--fd``) replaces ``--host/--port``, so tests never fight over port 8000.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.containerfile import Containerfile, Instruction, parse_containerfile
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

IMAGE_PORT = "8000"
TEST_KEYS = "ci-admin:admin:container-entrypoint-test-key"
STARTUP_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def containerfile() -> Containerfile:
    return parse_containerfile(REPO_ROOT / "Containerfile")


def image_command(cf: Containerfile, fd: int) -> list[str]:
    cmd = cf.final.last("CMD")
    assert cmd is not None
    argv = cmd.exec_form()
    assert argv[0] == "uvicorn"
    local: list[str] = [str(Path(sys.executable).with_name("uvicorn"))]
    skip_next = False
    for argument in argv[1:]:
        if skip_next:
            skip_next = False
        elif argument in {"--host", "--port"}:
            skip_next = True
        else:
            local.append(argument)
    return [*local, "--fd", str(fd)]


def health_command(cf: Containerfile, port: int) -> list[str]:
    check = cf.final.last("HEALTHCHECK")
    assert check is not None
    argv = Instruction("CMD", check.body.removeprefix("CMD "), check.line).exec_form()
    assert argv[0] == "python"
    script = argv[-1]
    assert f"127.0.0.1:{IMAGE_PORT}/" in script
    return [sys.executable, *argv[1:-1], script.replace(f"127.0.0.1:{IMAGE_PORT}/", f"127.0.0.1:{port}/")]


def image_environment(cf: Containerfile, data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PERF_AGENT_")}
    for name, value in cf.final.env(cf.global_args).items():
        if name != "PATH":
            env[name] = value
    env["PERF_AGENT_DATABASE"] = str(data_dir / Path(env["PERF_AGENT_DATABASE"]).name)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(overrides)
    return env


class RunningImage:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def running_image(containerfile: Containerfile, listener: socket.socket, tmp_path: Path) -> Iterator[RunningImage]:
    process = subprocess.Popen(
        image_command(containerfile, listener.fileno()),
        env=image_environment(containerfile, tmp_path, PERF_AGENT_API_KEYS=TEST_KEYS),
        cwd=tmp_path,
        pass_fds=(listener.fileno(),),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield RunningImage(process, listener.getsockname()[1])
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def wait_until_serving(image: RunningImage) -> httpx.Response:
    # The listener was bound before uvicorn started, so this waits in the backlog until it serves.
    return httpx.get(f"http://127.0.0.1:{image.port}/api/v1/health", timeout=STARTUP_TIMEOUT_S)


def run_health_check(containerfile: Containerfile, port: int) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(health_command(containerfile, port), capture_output=True, timeout=60, check=False)


def test_health_check_passes_against_the_image_command(
    containerfile: Containerfile, running_image: RunningImage
) -> None:
    response = wait_until_serving(running_image)
    assert response.status_code == 200
    assert "server" not in response.headers
    check = run_health_check(containerfile, running_image.port)
    assert check.returncode == 0, check.stderr


def test_sigterm_stops_the_image_command_cleanly(running_image: RunningImage) -> None:
    assert wait_until_serving(running_image).status_code == 200
    running_image.process.send_signal(signal.SIGTERM)
    output, _ = running_image.process.communicate(timeout=30)
    # uvicorn re-raises the signal after a graceful shutdown, so the engine sees "killed by SIGTERM" (143).
    assert running_image.process.returncode in {0, -signal.SIGTERM}, output
    assert "Application shutdown complete." in output
    assert "Traceback" not in output


def test_health_check_fails_when_nothing_answers(containerfile: Containerfile) -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        closed_port = reserved.getsockname()[1]
        check = run_health_check(containerfile, closed_port)
    assert check.returncode != 0
    assert b"Connection refused" in check.stderr


def test_health_check_fails_while_the_agent_is_not_ready(containerfile: Containerfile) -> None:
    asked: list[str] = []

    class NotReady(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = b'{"status": "not_ready"}'
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check = run_health_check(containerfile, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["/api/v1/health/ready"]
    assert check.returncode != 0
    assert b"503" in check.stderr


def test_production_default_refuses_to_start_without_keys(
    containerfile: Containerfile, listener: socket.socket, tmp_path: Path
) -> None:
    completed = subprocess.run(
        image_command(containerfile, listener.fileno()),
        env=image_environment(containerfile, tmp_path),
        cwd=tmp_path,
        pass_fds=(listener.fileno(),),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode != 0
    assert "PERF_AGENT_API_KEYS" in completed.stderr
    assert not (tmp_path / "agent.db").exists()
