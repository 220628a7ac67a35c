"""Run a simulated fleet from Python: servers on a background event-loop thread, a small API.

    with start_simulator("vllm", 3, time_scale=10) as fleet:
        url = fleet.instances[0].metrics_url
        fleet.set_faults(fleet.instances[0].instance_id, latency_regression=3.0)

    with start_simulator("vllm", 8, latency_shape="heavy-tailed") as fleet: ...

All instance state lives on the loop thread; every method here hops onto it and waits, so
tests may call them from any thread. `stop()` (or leaving the `with`) closes every listener
and joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from performance_agent.simulator.instance import SimulatedInstance, SimulatedServerSpec
from performance_agent.simulator.server import SimulatorServer
from performance_agent.simulator.shape import SHAPE_PRESETS, LatencyShape

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from types import TracebackType

    from performance_agent.simulator.load_model import Workload

__all__ = ("InstanceHandle", "ManualClock", "SimulatedFleet", "build_specs", "start_simulator")

T = TypeVar("T")


class ManualClock:
    """A clock tests move by hand (`advance`), so simulated time needs no sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass(frozen=True, slots=True)
class InstanceHandle:
    """Where to reach one simulated server. `endpoint` + `metrics_path` is what a scraper needs."""

    instance_id: str
    engine: str
    version: str
    endpoint: str
    metrics_path: str
    base_url: str
    control_url: str

    @property
    def metrics_url(self) -> str:
        return self.endpoint + self.metrics_path


def build_specs(
    engine: str,
    count: int,
    *,
    version: str = "current",
    seed: int = 0,
    flags: dict[str, object] | None = None,
    workload: Workload | None = None,
    latency_shape: LatencyShape | str | None = None,
) -> list[SimulatedServerSpec]:
    """`count` instances of one engine named `{engine}-{i}`, seeds `seed + i`.

    `latency_shape` is a `LatencyShape` or a preset name (`heavy-tailed`); each instance draws
    it from its own stream.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if isinstance(latency_shape, str):
        if latency_shape not in SHAPE_PRESETS:
            raise ValueError(f"unknown latency shape {latency_shape!r}; choose from {', '.join(SHAPE_PRESETS)}")
        latency_shape = SHAPE_PRESETS[latency_shape]
    base = SimulatedServerSpec(
        engine=engine, version=version, flags=dict(flags or {}), latency_shape=latency_shape or LatencyShape()
    )
    if workload is not None:
        base = replace(base, workload=workload)
    return [replace(base, instance_id=f"{engine}-{i}", seed=seed + i) for i in range(count)]


class SimulatedFleet:
    def __init__(
        self,
        specs: Sequence[SimulatedServerSpec],
        *,
        base_port: int = 0,
        single_port: bool = False,
        hub_port: int | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
    ) -> None:
        ids = [spec.instance_id or f"{spec.engine}-{i}" for i, spec in enumerate(specs)]
        if len(set(ids)) != len(ids):
            raise ValueError("instance ids must be unique")
        self.clock = clock
        self._instances = [SimulatedInstance(s, i, clock, time_scale) for s, i in zip(specs, ids, strict=True)]
        self.server = SimulatorServer(self._instances, host, base_port, single_port, hub_port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.instances: list[InstanceHandle] = []

    # -------------------------------------------------------------------------- lifecycle
    def start(self) -> SimulatedFleet:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as error:  # reported to the starting thread
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.server.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="simulated-fleet", daemon=True)
        self._loop = loop
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]
        self.instances = [InstanceHandle(**self.server.describe(i.id)) for i in self._instances]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._loop = self._thread = None

    def __enter__(self) -> SimulatedFleet:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- control
    def _on_loop(self, action: Callable[[], Coroutine[object, object, T]]) -> T:
        if self._loop is None:
            raise RuntimeError("the fleet is not running")
        return asyncio.run_coroutine_threadsafe(action(), self._loop).result()

    def _instance(self, instance_id: str) -> SimulatedInstance:
        for instance in self._instances:
            if instance.id == instance_id:
                return instance
        raise KeyError(instance_id)

    def _control(self, instance_id: str, change: Callable[[SimulatedInstance], None]) -> dict[str, object]:
        instance = self._instance(instance_id)

        async def act() -> dict[str, object]:
            change(instance)
            await self.server.reconcile()
            return instance.state()

        return self._on_loop(act)

    def handle(self, instance_id: str) -> InstanceHandle:
        return next(h for h in self.instances if h.instance_id == instance_id)

    def state(self, instance_id: str) -> dict[str, object]:
        return self._control(instance_id, lambda _instance: None)

    def set_faults(self, instance_id: str, **faults: object) -> dict[str, object]:
        return self._control(instance_id, lambda instance: instance.set_faults(dict(faults)))

    def set_config(self, instance_id: str, flags: dict[str, object]) -> dict[str, object]:
        return self._control(instance_id, lambda instance: instance.merge_config(flags))

    def set_shape(self, instance_id: str, **shape: object) -> dict[str, object]:
        """As `POST /control/shape`: `preset=`, `sigma=`, `slow_share=`, `slow_factor=`, `seed=`."""
        return self._control(instance_id, lambda instance: instance.set_shape(dict(shape)))

    def set_load(self, instance_id: str, **load: object) -> dict[str, object]:
        return self._control(instance_id, lambda instance: instance.set_load(dict(load)))

    def restart(self, instance_id: str) -> dict[str, object]:
        return self._control(instance_id, lambda instance: instance.restart())

    def apply(
        self, instance_id: str, changes: dict[str, object], env: dict[str, object] | None = None
    ) -> dict[str, object]:
        return self._control(instance_id, lambda instance: instance.apply({"changes": changes, "env": env or {}}))

    def metrics_text(self, instance_id: str) -> str:
        instance = self._instance(instance_id)

        async def render() -> str:
            return instance.metrics_text()

        return self._on_loop(render)


def start_simulator(
    engine: str,
    count: int = 1,
    base_port: int = 0,
    *,
    version: str = "current",
    seed: int = 0,
    time_scale: float = 1.0,
    single_port: bool = False,
    clock: Callable[[], float] = time.time,
    flags: dict[str, object] | None = None,
    workload: Workload | None = None,
    latency_shape: LatencyShape | str | None = None,
) -> SimulatedFleet:
    """Start `count` simulated `engine` servers on 127.0.0.1 and return the running fleet."""
    specs = build_specs(
        engine, count, version=version, seed=seed, flags=flags, workload=workload, latency_shape=latency_shape
    )
    fleet = SimulatedFleet(specs, base_port=base_port, single_port=single_port, time_scale=time_scale, clock=clock)
    return fleet.start()
