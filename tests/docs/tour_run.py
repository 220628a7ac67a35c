"""Running the guide of docs/api.md: its setup for real, then every example in order, through httpx.

The setup block is executed as written with three substitutions a test needs: the simulated
servers are started in this process (`start_simulator`) on free ports, the agent runs as
`python -m performance_agent serve` on a free port with a temporary SQLite file, and every
`127.0.0.1:<documented port>` in later commands is rewritten to the port really used. Every
`PERF_AGENT_*` variable the guide exports reaches the agent unchanged.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from performance_agent.simulator.fleet import start_simulator
from tests.agent_process import free_port
from tests.docs.tour_parse import (
    CurlCall,
    Example,
    SetupStep,
    Tour,
    TourSyntaxError,
    jq_path,
    parse_curl,
    shell_words,
)
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from performance_agent.simulator.fleet import SimulatedFleet

__all__ = ("ENVELOPE_KEYS", "Outcome", "TourRunner", "missing_keys", "route_of", "uncovered_routes")

ENVELOPE_KEYS = frozenset({"error", "message", "details", "timestamp", "path", "request_id", "context"})
_ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")
_PARAMETER = re.compile(r"\{[^}:]+:([^}]+)\}")
WAIT_DEADLINE_S = 60.0
POLL_PAUSE_S = 0.1


@dataclass(slots=True)
class Outcome:
    example: Example
    status: int
    body: str
    problems: list[str] = field(default_factory=list)


def missing_keys(documented: Any, actual: Any, path: str = "$") -> list[str]:
    """Keys of a documented answer that the real answer lacks; values may differ, and each documented array item
    must match some real item (order aside)."""
    if isinstance(documented, dict):
        if not isinstance(actual, dict):
            return [f"{path} is {type(actual).__name__}, documented as an object"]
        missing: list[str] = []
        for key, value in documented.items():
            if key not in actual:
                missing.append(f"{path}.{key}")
            else:
                missing += missing_keys(value, actual[key], f"{path}.{key}")
        return missing
    if isinstance(documented, list):
        if not isinstance(actual, list):
            return [f"{path} is {type(actual).__name__}, documented as an array"]
        missing = []
        for position, item in enumerate(documented):
            attempts: list[list[str]] = [missing_keys(item, candidate, f"{path}[{position}]") for candidate in actual]
            if not attempts:
                missing.append(f"{path}[{position}] (the array is empty)")
            elif all(attempts):
                closest: list[str] = min(attempts, key=len)
                missing += closest
        return missing
    return []


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = ""
    position = 0
    for match in _PARAMETER.finditer(template):
        pattern += re.escape(template[position : match.start()]) + (".+" if match[1] == "path" else "[^/]+")
        position = match.end()
    return re.compile(pattern + re.escape(template[position:]) + "$")


def route_of(method: str, path: str, routes: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The route a request reaches: static routes before parameterised ones, as Litestar's router decides."""
    candidates = [
        (m, template) for m, template in routes if m == method and _template_regex(template).match(path) is not None
    ]
    candidates.sort(key=lambda route: (len(_PARAMETER.findall(route[1])), -len(route[1])))
    return candidates[0] if candidates else None


def uncovered_routes(routes: list[tuple[str, str]], calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    covered = {route_of(method, path, routes) for method, path in calls}
    return [route for route in routes if route not in covered]


class TourRunner:
    """Executes a parsed guide; `start()` runs its setup, `run(example)` one example, `stop()` cleans up."""

    def __init__(self, tour: Tour, workdir: Path) -> None:
        self.tour = tour
        self.workdir = workdir
        self.variables: dict[str, str] = {}
        self.ports: dict[int, int] = {}
        self.fleets: list[SimulatedFleet] = []
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_port: int | None = None
        self.log = workdir / "agent.log"
        self.calls: list[tuple[str, str]] = []
        self.client = httpx.Client(timeout=15.0, follow_redirects=False, trust_env=False)

    # ----------------------------------------------------------------------------- setup
    def _lookup(self, name: str) -> str:
        if name not in self.variables:
            raise TourSyntaxError(f"${name} is used before the guide sets it")
        return self.variables[name]

    def rewrite(self, text: str) -> str:
        return _ADDRESS.sub(lambda m: f"127.0.0.1:{self.ports.get(int(m[1]), int(m[1]))}", text)

    def start(self) -> None:
        for step in self.tour.setup:
            self._setup_step(step)

    def _setup_step(self, step: SetupStep) -> None:
        if step.kind == "export":
            for word in shell_words(self.rewrite(step.text), self._lookup):
                name, separator, value = word.partition("=")
                if not separator:
                    raise TourSyntaxError(f"export needs NAME=value, got {word!r}")
                self.variables[name] = value
        elif step.kind == "simulate":
            assert step.fleet is not None
            fleet = start_simulator(step.fleet.engine, step.fleet.count, time_scale=step.fleet.time_scale)
            self.fleets.append(fleet)
            for index, handle in enumerate(fleet.instances):
                self.ports[step.fleet.base_port + index] = int(handle.endpoint.rsplit(":", 1)[1])
            self.ports[step.fleet.base_port + step.fleet.count] = fleet.server.hub_port
        elif step.kind == "serve":
            self._serve()
        else:
            self._wait_ready(self.rewrite(shell_words(step.text, self._lookup)[0]))

    def _serve(self) -> None:
        self.agent_port = free_port()
        self.ports[int(self.variables.get("PERF_AGENT_PORT", "8000"))] = self.agent_port
        env = {name: value for name, value in os.environ.items() if not name.startswith("PERF_AGENT_")}
        env.update({name: value for name, value in self.variables.items() if name.startswith("PERF_AGENT_")})
        env.update(
            {
                "PYTHONPATH": str(REPO_ROOT),
                "PERF_AGENT_HOST": "127.0.0.1",
                "PERF_AGENT_PORT": str(self.agent_port),
                "PERF_AGENT_DATABASE": str(self.workdir / "tour.db"),
            }
        )
        with self.log.open("ab") as log:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "performance_agent", "serve"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_ready(self, url: str) -> None:
        give_up = time.monotonic() + 30.0
        while True:
            assert self.agent is not None
            assert self.agent.poll() is None, self.log_tail()
            try:
                if self.client.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < give_up, "the agent did not become ready:\n" + self.log_tail()
            time.sleep(POLL_PAUSE_S)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "(no agent log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.client.close()
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        for fleet in self.fleets:
            fleet.stop()

    # -------------------------------------------------------------------------- examples
    def _send(self, call: CurlCall) -> httpx.Response:
        content = call.body.encode() if call.body is not None else None
        response = self.client.request(call.method, call.url, headers=list(call.headers), content=content)
        if self.agent_port is not None and response.request.url.port == self.agent_port:
            self.calls.append((call.method, response.request.url.path))
        return response

    def run(self, example: Example) -> Outcome:
        call = parse_curl(self.rewrite(example.curl), self._lookup)
        response = self._send(call)
        if example.kind == "wait":
            assert example.expr is not None
            give_up = time.monotonic() + WAIT_DEADLINE_S
            while _json_or_none(response) is None or str(jq_path(response.json(), example.expr)) != example.value:
                if time.monotonic() > give_up:
                    return Outcome(example, response.status_code, response.text, [f"never reached {example.value}"])
                time.sleep(POLL_PAUSE_S)
                response = self._send(call)
        outcome = Outcome(example, response.status_code, response.text)
        outcome.problems += self._check(example, response)
        if example.kind == "capture_json":
            assert example.name is not None
            assert example.expr is not None
            value = jq_path(_json_or_none(response), example.expr)
            self.variables[example.name] = "null" if value is None else str(value)
        elif example.kind == "capture_header":
            assert example.name is not None
            assert example.expr is not None
            self.variables[example.name] = response.headers.get(example.expr, "")
        return outcome

    def _check(self, example: Example, response: httpx.Response) -> list[str]:
        problems: list[str] = []
        if response.status_code != example.expect:
            problems.append(f"status {response.status_code}, documented {example.expect}")
        document = _json_or_none(response)
        if example.error is not None:
            problems += _envelope_problems(example.error, document, response)
        for text in example.contains:
            expected = self.rewrite(" ".join(shell_words(text, self._lookup)))
            if expected not in response.text:
                problems.append(f"the answer does not contain {expected!r}")
        if example.has_response:
            problems += [f"documented key {key} is missing" for key in missing_keys(example.response, document)]
        return problems


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _envelope_problems(error: str, document: Any, response: httpx.Response) -> list[str]:
    if not isinstance(document, dict):
        return ["the answer is not a JSON error envelope"]
    problems = []
    if document.get("error") != error:
        problems.append(f"error {document.get('error')!r}, documented {error!r}")
    if not set(document) >= ENVELOPE_KEYS:
        problems.append(f"the envelope lacks {sorted(ENVELOPE_KEYS - set(document))}")
    if document.get("request_id") != response.headers.get("x-request-id"):
        problems.append("the envelope's request_id differs from X-Request-ID")
    if document.get("path") != response.request.url.path:
        problems.append(f"the envelope's path is {document.get('path')!r}")
    return problems
