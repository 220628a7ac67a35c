"""One simulated server: launch flags, lifecycle, faults, and the answer to every HTTP request.

Pure (no sockets): the HTTP layer hands `handle()` a method, path and body and writes back the
`Reply`. Time comes from the injected clock; simulated time = wall time elapsed * time_scale,
and the model catches up lazily whenever someone asks (a scrape, a control call), so an idle
fleet costs nothing and counters still grow as if the server had been busy all along.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from performance_agent.simulator.control import ControlError, Faults, merge_faults, merge_workload
from performance_agent.simulator.knobs import (
    EngineParams,
    Flags,
    Hardware,
    SimulatedModel,
    StartError,
    canonical_knob,
    coerce_value,
    flag_spelling,
)
from performance_agent.simulator.load_model import EventSink, LoadModel, Workload
from performance_agent.simulator.pages import ENGINES, PageContext
from performance_agent.simulator.shape import (
    SHAPE_PRESETS,
    LatencyShape,
    LatencyShaper,
    ShapeError,
    parse_shape,
    shape_stream,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ("GARBAGE_PAGE", "REGRESSION_ENV", "TTFT_REGRESSION_ENV", "Reply", "SimulatedInstance", "SimulatedServerSpec")

GARBAGE_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)
JSON = "application/json"
#: Launch variables only the simulator reads, the launch-time twins of the `latency_regression`
#: and `ttft_regression` faults (a variable and its fault multiply). Being part of the launch
#: environment, they are what an actuator can set and roll back, e.g.
#: `/control/apply {"env": {"SIMULATOR_TTFT_REGRESSION": "1.5"}}`.
REGRESSION_ENV = "SIMULATOR_LATENCY_REGRESSION"
TTFT_REGRESSION_ENV = "SIMULATOR_TTFT_REGRESSION"


@dataclass(frozen=True, slots=True)
class SimulatedServerSpec:
    """How to launch one simulated server. `flags` accepts `--max-num-seqs` or `max_num_seqs`.

    `seed` seeds the load model and, with the instance id, the latency shape's own stream.
    """

    engine: str
    instance_id: str | None = None
    version: str = "current"
    seed: int = 0
    flags: Mapping[str, object] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    workload: Workload = field(default_factory=Workload)
    hardware: Hardware = field(default_factory=Hardware)
    model: SimulatedModel = field(default_factory=SimulatedModel)
    latency_shape: LatencyShape = field(default_factory=LatencyShape)


def _env_factor(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name)
    if raw is None:
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        factor = math.nan
    if not math.isfinite(factor) or not 0 < factor <= 1000:
        raise StartError(f"{name} must be a number within (0, 1000], got {raw!r}")
    return factor


@dataclass(frozen=True, slots=True)
class Reply:
    """What to send back. `drop` closes the connection without an answer (unreachable)."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    delay_s: float = 0.0
    drop: bool = False

    @classmethod
    def json(cls, status: int, payload: object) -> Reply:
        return cls(status, json.dumps(payload, sort_keys=True).encode())


@dataclass(slots=True)
class _Rank:
    model: LoadModel
    metrics: EventSink


class SimulatedInstance:
    def __init__(
        self, spec: SimulatedServerSpec, instance_id: str, clock: Callable[[], float], time_scale: float = 1.0
    ) -> None:
        if spec.engine not in ENGINES:
            raise ValueError(f"unknown engine {spec.engine!r}; choose from {', '.join(ENGINES)}")
        binding = ENGINES[spec.engine]
        if spec.version not in binding.versions:
            raise ValueError(
                f"unknown {spec.engine} version {spec.version!r}; choose from {', '.join(binding.versions)}"
            )
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.spec, self.id, self.binding = spec, instance_id, binding
        self.clock, self.time_scale = clock, time_scale
        self.faults = Faults()
        self.shape_seed = spec.seed
        self.shaper = LatencyShaper(spec.latency_shape, shape_stream(spec.seed, instance_id))
        self._env_regression = self._env_ttft_regression = 1.0
        self.workload = spec.workload
        self.launch: dict[str, object] = {canonical_knob(k): v for k, v in spec.flags.items()}
        self.env: dict[str, str] = dict(spec.env)
        self.start_error: str | None = None
        self.restarts = 0
        self._pinned_fraction = 0.0
        self._pinned_tokens = 0
        self._ranks: list[_Rank] = []
        self._flags: Flags | None = None
        self._params: EngineParams | None = None
        self.started_at = self._last_wall = clock()
        self._sim_elapsed = 0.0
        self._start()

    # ------------------------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        return self._params is not None

    @property
    def serves_data(self) -> bool:
        """Whether the data plane answers at all (the control API always does)."""
        return self.running and not self.faults.unreachable

    def _resolve(self, launch: Mapping[str, object], env: Mapping[str, str]) -> tuple[Flags, EngineParams]:
        values: dict[str, int | float | str | bool | None] = {k.name: k.default for k in self.binding.knobs}
        for key, raw in launch.items():
            spec = self.binding.knob(key)
            if spec is None:
                raise StartError(f"unrecognized arguments: {flag_spelling(key)}")
            try:
                values[key] = coerce_value(spec, raw)
            except ValueError as error:
                raise StartError(str(error)) from None
        flags = Flags(values)
        return flags, self.binding.derive(flags, dict(env), self.spec.hardware, self.spec.model)

    def _start(self) -> None:
        self.started_at = self._last_wall = self.clock()
        self._sim_elapsed = 0.0
        self._ranks = []
        try:
            self._flags, self._params = self._resolve(self.launch, self.env)
            self._env_regression = _env_factor(self.env, REGRESSION_ENV)
            self._env_ttft_regression = _env_factor(self.env, TTFT_REGRESSION_ENV)
        except StartError as error:
            self._flags, self._params, self.start_error = None, None, str(error)
            return
        self.start_error = None
        if self._pinned_fraction and not self._pinned_tokens:
            self._pinned_tokens = int(self._pinned_fraction * self._params.kv_capacity_tokens)
        count = self.binding.rank_count(self._flags)
        for rank in range(count):
            metrics = self.binding.new_rank(self.spec.version, self._params, self._flags)
            workload, seed = self._rank_workload(count), self.spec.seed * 1009 + rank
            metrics.shaper = self.shaper
            model = LoadModel(self._params, self.spec.hardware, workload, metrics, seed, shaper=self.shaper)
            self._ranks.append(_Rank(model, metrics))
        self._apply_faults_to_models()

    def _rank_workload(self, count: int) -> Workload:
        return replace(self.workload, arrival_rate_per_s=self.workload.arrival_rate_per_s / count)

    def _apply_faults_to_models(self) -> None:
        share = self._pinned_tokens // max(len(self._ranks), 1)
        for rank in self._ranks:
            rank.model.latency_factor = self.faults.latency_regression * self._env_regression
            rank.model.ttft_factor = self.faults.ttft_regression * self._env_ttft_regression
            rank.model.error_fraction = self.faults.error_burst
            rank.model.pinned_tokens = share

    def restart(self) -> None:
        """As a real restart: in-flight work is lost and every counter starts again from zero."""
        self.sync()
        self.restarts += 1
        self._start()

    def sync(self) -> None:
        """Advance the simulation to the clock's present."""
        now = self.clock()
        elapsed = max(0.0, now - self._last_wall) * self.time_scale
        self._last_wall = max(now, self._last_wall)
        if not self._ranks:
            return
        self._sim_elapsed += elapsed
        for rank in self._ranks:
            rank.model.advance(elapsed)

    # --------------------------------------------------------------------------- control
    def set_faults(self, body: dict[str, object]) -> None:
        self.sync()
        self.faults = merge_faults(self.faults, body)
        if self.faults.kv_pressure != self._pinned_fraction:
            self._pinned_fraction = self.faults.kv_pressure
            capacity = self._params.kv_capacity_tokens if self._params else 0
            self._pinned_tokens = int(self._pinned_fraction * capacity)
        self._apply_faults_to_models()

    def set_shape(self, body: dict[str, object]) -> None:
        """Change the latency shape (and, with `seed`, restart its stream); survives restarts like a fault."""
        self.sync()
        try:
            shape, seed = parse_shape(self.shaper.shape, body)
        except ShapeError as error:
            raise ControlError(422, "invalid_shape", str(error)) from None
        if seed is None:
            self.shaper.reshape(shape)
        else:
            self.shape_seed = seed
            self.shaper.reshape(shape, shape_stream(seed, self.id))

    def shape_state(self) -> dict[str, object]:
        shape = self.shaper.shape
        preset = next((name for name, known in SHAPE_PRESETS.items() if known == shape), None)
        return {**shape.as_dict(), "preset": preset, "seed": self.shape_seed, "mean_factor": round(shape.mean, 6)}

    def set_load(self, body: dict[str, object]) -> None:
        self.sync()
        self.workload = merge_workload(self.workload, body)
        for rank in self._ranks:
            rank.model.workload = self._rank_workload(len(self._ranks))

    def merge_config(self, body: dict[str, object]) -> None:
        """Change flags on the running server (a test shortcut; real engines need a restart)."""
        self.sync()
        if not self.running or self._flags is None:
            raise ControlError(409, "not_running", f"the server is down ({self.start_error}); use /control/apply")
        launch = {**self.launch}
        for key, value in body.items():
            name = canonical_knob(key)
            if self.binding.knob(name) is None:
                raise ControlError(400, "unknown_flag", f"{self.binding.name} has no flag {flag_spelling(name)}")
            if value is None:
                launch.pop(name, None)
            else:
                launch[name] = value
        try:
            flags, params = self._resolve(launch, self.env)
        except StartError as error:
            raise ControlError(422, "invalid_config", str(error)) from None
        if self.binding.rank_count(flags) != len(self._ranks):
            raise ControlError(409, "restart_required", "changing the number of engine ranks needs /control/apply")
        self.launch, self._flags, self._params = launch, flags, params
        for rank in self._ranks:
            rank.model.reconfigure(params)

    def apply(self, body: dict[str, object]) -> None:
        """What an actuator does: redeploy with changed flags/env, i.e. change then restart.

        Like a real redeploy, a flag the engine does not know or a value it rejects is not
        refused here: the server fails to start and stays down until a good apply.
        """
        changes, env = body.get("changes", {}), body.get("env", {})
        if not isinstance(changes, dict) or not isinstance(env, dict):
            raise ControlError(400, "invalid_body", 'expected {"changes": {"--flag": value}, "env": {"NAME": "value"}}')
        unknown = set(body) - {"changes", "env"}
        if unknown:
            raise ControlError(400, "invalid_body", f"unknown fields: {', '.join(sorted(unknown))}")
        for key, value in changes.items():
            if value is None:
                self.launch.pop(canonical_knob(key), None)
            else:
                self.launch[canonical_knob(key)] = value
        for key, value in env.items():
            if value is None:
                self.env.pop(str(key), None)
            else:
                self.env[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
        self.restart()

    def state(self) -> dict[str, object]:
        self.sync()
        payload: dict[str, object] = {
            "instance_id": self.id,
            "engine": self.binding.name,
            "version": self.spec.version,
            "engine_version": self.binding.versions[self.spec.version],
            "model": self._model_name(),
            "state": "running" if self.running else "crashed",
            "start_error": self.start_error,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "sim_time_s": round(self._sim_elapsed, 6),
            "time_scale": self.time_scale,
            "flags": {flag_spelling(k): v for k, v in sorted(self.launch.items())},
            "env": dict(sorted(self.env.items())),
            "faults": self.faults.active(),
            "latency_shape": self.shape_state(),
            "load": {k: getattr(self.workload, k) for k in self.workload.__dataclass_fields__},
        }
        if self._flags is not None and self._params is not None:
            p = self._params
            payload["config"] = dict(self._flags.values)
            payload["derived"] = {
                "kv_capacity_tokens": p.kv_capacity_tokens, "max_running": p.max_running,
                "token_budget": p.token_budget, "kv_bytes_per_token": p.kv_bytes_per_token,
                "weight_bytes": p.weight_bytes, "ranks": len(self._ranks), "pinned_kv_tokens": self._pinned_tokens,
                "prefix_caching": p.prefix_caching,
            }  # fmt: skip
            gauges = [rank.model.gauges() for rank in self._ranks]
            used, capacity = sum(g.kv_used_tokens for g in gauges), sum(g.kv_capacity_tokens for g in gauges)
            payload["gauges"] = {
                "running": sum(g.running for g in gauges), "waiting": sum(g.waiting for g in gauges),
                "kv_used_tokens": used, "kv_cache_usage": used / capacity if capacity else 0.0,
            }  # fmt: skip
        return payload

    # -------------------------------------------------------------------------- pages
    def _model_name(self) -> str:
        named = self.launch.get(self.binding.model_flag)
        return str(named) if named else self.spec.model.name

    def _context(self, cpu_seconds: float) -> PageContext:
        if self._flags is None or self._params is None:
            raise RuntimeError(f"instance {self.id} is not running: {self.start_error}")
        version = self.binding.versions[self.spec.version]
        return PageContext(self._model_name(), version, self.started_at, cpu_seconds, self._flags.values, self._params)

    def metrics_text(self) -> str:
        """The current `/metrics` page (raises if the server is down)."""
        if self._flags is None or self._params is None:
            raise RuntimeError(f"instance {self.id} is not running: {self.start_error}")
        self.sync()
        ctx = self._context(round(self._sim_elapsed * 0.9, 2))
        return self.binding.render(self.spec.version, ctx, [(r.metrics, r.model.gauges()) for r in self._ranks])

    def _data_plane(self, path: str) -> Reply:
        if not self.serves_data:
            return Reply(0, drop=True)
        if path == "/health":
            return Reply(200, b"", "text/plain; charset=utf-8")
        if path != "/metrics":
            return Reply.json(200, self.binding.info_routes[path](self._context(0.0)))
        delay = self.faults.scrape_delay_s
        if self.faults.http_error is not None:
            return Reply(self.faults.http_error, b"upstream error\n", "text/plain; charset=utf-8", delay)
        if self.faults.garbage_page:
            return Reply(200, GARBAGE_PAGE.encode(), "text/html; charset=utf-8", delay)
        return Reply(200, self.metrics_text().encode(), self.binding.content_type, delay)

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        """Answer one request addressed to this instance (`path` relative to its base URL)."""
        data_paths = {"/metrics", "/health", *self.binding.info_routes}
        control = {"/control/config", "/control/faults", "/control/load", "/control/shape"}
        control |= {"/control/restart", "/control/apply"}
        if path in data_paths or path == "/control":
            if method != "GET":
                return Reply.json(405, {"error": "method_not_allowed", "message": f"{method} {path}"})
            return Reply.json(200, self.state()) if path == "/control" else self._data_plane(path)
        if path not in control:
            return Reply.json(404, {"error": "not_found", "message": f"no route {path}"})
        if path == "/control/shape" and method == "GET":
            return Reply.json(200, self.shape_state())
        if method != "POST":
            return Reply.json(405, {"error": "method_not_allowed", "message": f"{method} {path}"})
        try:
            payload = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return Reply.json(400, {"error": "invalid_json", "message": "the body is not valid JSON"})
        if not isinstance(payload, dict):
            return Reply.json(400, {"error": "invalid_body", "message": "expected a JSON object"})
        try:
            {
                "/control/config": self.merge_config,
                "/control/faults": self.set_faults,
                "/control/shape": self.set_shape,
                "/control/load": self.set_load,
                "/control/restart": lambda _body: self.restart(),
                "/control/apply": self.apply,
            }[path](payload)
        except ControlError as error:
            return Reply.json(error.status, {"error": error.code, "message": error.message})
        return Reply.json(200, self.state())
