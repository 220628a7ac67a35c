"""The simulated world the demo runs in: which servers, in what condition, and the rollout settings.

Everything that makes the story finish in well under two minutes lives here. The simulator runs
`TIME_SCALE` times faster than the wall clock, so a one-second health window holds a minute of
simulated traffic (enough requests for a p99), and the monitor and guardrail values are sized
for that. The "chat" vLLM group has most of its KV cache held by long-lived sessions (the
simulator's `kv_pressure` fault) at a moderate request rate: KV pressure without a runaway queue.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from performance_agent.simulator import SHAPE_PRESETS, SimulatedFleet, SimulatedServerSpec, Workload

__all__ = (
    "CHAT_GROUP",
    "GUARDRAILS",
    "HARMFUL_CHANGE",
    "JUDGE",
    "KV_PRESSURE",
    "LATENCY_SHAPE",
    "MEMBERS",
    "MONITOR",
    "TIME_SCALE",
    "Member",
    "OffsetClock",
    "hub_url",
    "new_fleet",
    "registration",
    "set_conditions",
)

TIME_SCALE = 60.0
KV_PRESSURE = 0.9
CHAT_GROUP = "chat"
WARM_UP_WALL_S = 3.0  # simulated history (x TIME_SCALE) every server has before the first scrape
GPU = {"model": "A100-40GB", "memory_gib": 40, "count": 1}
MODEL = {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters_b": 8.03}
VLLM_FLAGS: dict[str, object] = {"max_num_seqs": 256, "gpu_memory_utilization": 0.9, "kv_cache_dtype": "auto"}

#: Health gate timing: warm-up 1 s, a window per second, two passing windows per stage.
MONITOR = {
    "duration_s": 2.0,
    "interval_s": 1.0,
    "warmup_s": 1.0,
    "min_passing_windows": 2,
    "inconclusive_timeout_s": 10.0,
}
#: Tolerated slowdowns of the sequential judge (docs/rollout.md). The FP8 KV-cache change shifts
#: latencies a little at this load, so the tolerance is wider than the 20% default; a harmful
#: change is caught anyway by its evidence, whatever the servers' heavy tails.
GUARDRAILS = {
    "max_ttft_p99_increase": 1.0,
    "max_itl_p99_increase": 0.5,
    "max_e2e_p99_increase": 0.5,
    "max_throughput_decrease": 0.5,
}
#: A stage of the demo lasts seconds: 300 canary requests (about two windows of one server) are its floor.
JUDGE = {"min_canary_requests": 300}
#: Every simulated server reports heavy-tailed latencies, as real TTFT is (lognormal spread plus 7%
#: of requests 6x slower: long prompts, prefix-cache misses).
LATENCY_SHAPE = "heavy-tailed"
#: Capping a busy server at four sequences: its queue grows and it serves a fraction of the requests.
HARMFUL_CHANGE = {"--max-num-seqs": 4}


@dataclass(frozen=True, slots=True)
class Member:
    instance_id: str
    engine: str
    group: str
    flags: dict[str, object] = field(default_factory=dict)
    arrival_rate_per_s: float = 3.0
    kv_pressure: float = 0.0


MEMBERS: tuple[Member, ...] = (
    *(Member(f"vllm-chat-{i}", "vllm", CHAT_GROUP, VLLM_FLAGS, 3.0, KV_PRESSURE) for i in range(4)),
    Member("vllm-batch-0", "vllm", "batch", VLLM_FLAGS, 3.0),
    Member("tgi-0", "tgi", "support", {}, 3.0),
    Member("sglang-0", "sglang", "agents", {}, 3.0),
)


class OffsetClock:
    """Wall time plus a jump made once at start, so servers already have traffic history when scraped."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


def new_fleet(clock: OffsetClock) -> SimulatedFleet:
    """Every member on its own 127.0.0.1 port plus the hub; not started yet (the caller owns stopping it)."""
    specs = [
        SimulatedServerSpec(
            engine=member.engine,
            instance_id=member.instance_id,
            seed=index,
            flags=dict(member.flags),
            workload=Workload(arrival_rate_per_s=member.arrival_rate_per_s),
            latency_shape=SHAPE_PRESETS[LATENCY_SHAPE],
        )
        for index, member in enumerate(MEMBERS)
    ]
    return SimulatedFleet(specs, time_scale=TIME_SCALE, clock=clock)


def set_conditions(fleet: SimulatedFleet, clock: OffsetClock) -> None:
    """Hold part of the chat group's KV cache, then jump the clock so every server has history."""
    for member in MEMBERS:
        if member.kv_pressure:
            fleet.set_faults(member.instance_id, kv_pressure=member.kv_pressure)
    clock.advance(WARM_UP_WALL_S)


def hub_url(fleet: SimulatedFleet) -> str:
    """Where the simulator actuator reaches `/i/{id}/control/apply` (it answers even for a crashed server)."""
    return f"http://{fleet.server.host}:{fleet.server.hub_port}"


def registration(fleet: SimulatedFleet, member: Member) -> dict[str, object]:
    """The `POST /api/v1/instances` body: where to scrape, the group label, and the declared launch flags."""
    handle = fleet.handle(member.instance_id)
    body: dict[str, object] = {
        "instance_id": member.instance_id,
        "engine": member.engine,
        "endpoint": handle.endpoint,
        "metrics_path": handle.metrics_path,
        "labels": {"group": member.group},
        "gpu": GPU,
        "model": MODEL,
    }
    if member.flags:
        body["engine_args"] = dict(member.flags)
    return body
