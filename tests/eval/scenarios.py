"""Labelled scenarios: simulated servers put into a known condition, then analysed as the agent would.

Each scenario says how to set a simulated server up (workload, launch flags, hardware, faults)
for a magnitude `m` in [0, 1] (0 = just past the detection threshold, 1 = far past it) and which
bottlenecks that condition is, by construction. A run simulates warm-up plus a five-minute
window scraped every 15 s, and sends every page through the agent's own path: exposition parser,
engine adapter, snapshot builder, the analysis window, the detectors and the planner.

Nothing here reads the detectors' thresholds to decide a label: labels come from the set-up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from performance_agent.analysis.detectors import detect_bottlenecks, summarize
from performance_agent.analysis.schemas import SEVERITY_RANK, BottleneckType
from performance_agent.analysis.window import decode_scrape_figures, window_figures
from performance_agent.engines.registry import adapt_page
from performance_agent.metrics.builder import build_snapshot, raw_scrape
from performance_agent.metrics.exposition import parse_page
from performance_agent.optimization.planner import build_plan
from performance_agent.optimization.schemas import GpuSpec, ModelSpec
from performance_agent.simulator import (
    Hardware,
    ManualClock,
    SimulatedInstance,
    SimulatedModel,
    SimulatedServerSpec,
    Workload,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.metrics.builder import RawScrape

__all__ = ("ENGINES", "EXCLUDED", "SCENARIOS", "Outcome", "Scenario", "Setup", "run_variant", "variant_setup")

ENGINES = ("vllm", "tgi", "sglang")

#: Engine x bottleneck pairs the engine gives no signal for: neither labelled nor scored.
EXCLUDED: dict[tuple[str, BottleneckType], str] = {
    ("tgi", "kv_cache_pressure"): "TGI exposes no KV usage (only reserved tokens) and no preemption metric",
}

WARMUP_S = 120.0
WINDOW_S = 300.0
SCRAPE_S = 15.0
_SIM_GPU = GpuSpec(name="A100-40GB", memory_gib=40.0, count=1)  # the simulator's default hardware, as declared
_SIM_MODEL = ModelSpec(name="meta-llama/Llama-3.1-8B-Instruct", params_b=8.03)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Setup:
    workload: Workload = field(default_factory=Workload)
    flags: dict[str, object] = field(default_factory=dict)
    faults: dict[str, object] = field(default_factory=dict)
    hardware: Hardware = field(default_factory=Hardware)
    model: SimulatedModel = field(default_factory=SimulatedModel)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    labels: frozenset[BottleneckType]
    build: Callable[[str, float, random.Random], Setup]
    engines: tuple[str, ...] = ENGINES
    why_not: str = ""  # why some engines do not run it

    @property
    def single(self) -> BottleneckType | None:
        return next(iter(self.labels)) if len(self.labels) == 1 else None


def _between(low: float, high: float, m: float) -> float:
    return low + (high - low) * m


def _geometric(low: float, high: float, m: float) -> float:
    """For magnitudes spanning decades (error rates): near variants stay within a factor of two of `low`."""
    return float(low * (high / low) ** m)


# ---------------------------------------------------------------------------- conditions

_CAP_FLAG = {"vllm": "max_num_seqs", "sglang": "max_running_requests", "tgi": "max_batch_size"}
#: Requests per second one running slot serves with 256-token outputs at the default hardware (measured).
_RATE_PER_SLOT = 0.24


def _healthy(engine: str, m: float, rng: random.Random) -> Setup:
    """A busy server well within its capacity: moderate batch, fast tokens, no faults."""
    return Setup(workload=Workload(arrival_rate_per_s=_between(3.0, 10.0, rng.random())))


def _capped(engine: str, m: float, rng: random.Random, overload: float) -> Setup:
    """Concurrency capped below the offered load: requests wait for a slot (short of capacity)."""
    slots = rng.choice((8, 12, 16, 24))
    flags: dict[str, object] = {_CAP_FLAG[engine]: slots}
    if engine == "tgi":
        flags["max_concurrent_requests"] = 4096  # queue rather than reject
    if engine == "vllm":
        flags["max_num_batched_tokens"] = 2048
    return Setup(workload=Workload(arrival_rate_per_s=slots * _RATE_PER_SLOT * overload), flags=flags)


def _queueing(engine: str, m: float, rng: random.Random) -> Setup:
    return _capped(engine, m, rng, overload=_between(1.1, 2.5, m))


def _kv_pressure(engine: str, m: float, rng: random.Random) -> Setup:
    """Something else holds most of the KV pool (long-lived sessions); light load still fits."""
    return Setup(
        workload=Workload(arrival_rate_per_s=_between(0.8, 1.2, rng.random())),
        faults={"kv_pressure": _between(0.90, 0.955, m)},
    )


def _prefill(engine: str, m: float, rng: random.Random) -> Setup:
    """Long prompts: a small prefill token budget (vLLM, SGLang) or a compute-poor GPU (TGI, which prefills whole)."""
    model = SimulatedModel(max_position=32768)
    if engine == "tgi":
        workload = Workload(
            arrival_rate_per_s=_between(0.4, 0.5, rng.random()),
            prompt_tokens_mean=_between(6000.0, 7000.0, m),
            output_tokens_mean=512.0,
            length_sigma=0.3,
            max_tokens=1024,
        )
        hardware = Hardware(compute_tflops=_between(150.0, 100.0, m))
        return Setup(workload=workload, flags={"max_batch_prefill_tokens": 16384}, hardware=hardware, model=model)
    budget_flag = "max_num_batched_tokens" if engine == "vllm" else "chunked_prefill_size"
    flags: dict[str, object] = {budget_flag: 256}
    if engine == "vllm":
        flags["max_num_seqs"] = 128
    workload = Workload(
        arrival_rate_per_s=_between(0.8, 1.2, rng.random()),
        prompt_tokens_mean=_between(6000.0, 10000.0, m),
        output_tokens_mean=256.0,
        length_sigma=0.3,
        max_tokens=1024,
    )
    return Setup(workload=workload, flags=flags, model=model)


def _decode(engine: str, m: float, rng: random.Random) -> Setup:
    """A GPU with a fraction of the memory bandwidth (e.g. weights partly offloaded): each decode step,
    which reads every weight, is slow, while compute-bound prefill is not."""
    return Setup(
        workload=Workload(arrival_rate_per_s=_between(0.8, 1.5, rng.random()), output_tokens_mean=128.0),
        hardware=Hardware(mem_bandwidth_gb_s=_between(150.0, 90.0, m)),
    )


def _idle(engine: str, m: float, rng: random.Random) -> Setup:
    """A trickle of short requests on a whole GPU."""
    return Setup(workload=Workload(arrival_rate_per_s=_between(1.0, 0.05, m), output_tokens_mean=64.0))


def _errors(engine: str, m: float, rng: random.Random) -> Setup:
    """A share of requests fails (e.g. a bad client release sending invalid requests)."""
    return Setup(
        workload=Workload(arrival_rate_per_s=_between(3.0, 8.0, rng.random())),
        faults={"error_burst": _geometric(0.013, 0.3, m)},
    )


def _queueing_and_errors(engine: str, m: float, rng: random.Random) -> Setup:
    capped = _capped(engine, m, rng, overload=_between(1.2, 2.5, m))
    return Setup(workload=capped.workload, flags=capped.flags, faults={"error_burst": _between(0.03, 0.2, m)})


def _decode_and_errors(engine: str, m: float, rng: random.Random) -> Setup:
    slow = _decode(engine, m, rng)
    return Setup(workload=slow.workload, hardware=slow.hardware, faults={"error_burst": _between(0.03, 0.2, m)})


def _kv_and_queueing(engine: str, m: float, rng: random.Random) -> Setup:
    """The pool nearly full under real load: sequences wait for blocks."""
    return Setup(
        workload=Workload(arrival_rate_per_s=_between(2.5, 4.0, rng.random())),
        faults={"kv_pressure": _between(0.95, 0.975, m)},
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("healthy", frozenset(), _healthy),
    Scenario(
        "kv_cache_pressure",
        frozenset({"kv_cache_pressure"}),
        _kv_pressure,
        engines=("vllm", "sglang"),
        why_not="tgi: excluded pair (no KV usage or preemption signal); the simulator's kv_pressure fault also "
        "leaves TGI's full-reservation admission unchanged",
    ),
    Scenario("queueing", frozenset({"queueing"}), _queueing),
    Scenario("prefill_latency", frozenset({"prefill_latency"}), _prefill),
    Scenario("decode_latency", frozenset({"decode_latency"}), _decode),
    Scenario("underutilization", frozenset({"underutilization"}), _idle),
    Scenario("request_errors", frozenset({"request_errors"}), _errors),
    Scenario("mixed_queueing_errors", frozenset({"queueing", "request_errors"}), _queueing_and_errors),
    Scenario("mixed_decode_errors", frozenset({"decode_latency", "request_errors"}), _decode_and_errors),
    Scenario(
        "mixed_kv_queueing",
        frozenset({"kv_cache_pressure", "queueing"}),
        _kv_and_queueing,
        engines=("vllm", "sglang"),
        why_not="tgi: the simulator's kv_pressure fault does not change TGI's admission, and KV is an excluded pair",
    ),
)


# ---------------------------------------------------------------------------- running


class Outcome(msgspec.Struct, kw_only=True):
    scenario: str
    engine: str
    variant: int
    magnitude: float
    labels: list[str]
    detected: list[str]
    first_recommendation: str | None
    first_addresses: list[str]
    summary: str
    #: Severity of each detected labelled type: how far past its thresholds the variant landed.
    severities: dict[str, str] = msgspec.field(default_factory=dict)


def variant_setup(scenario: Scenario, engine: str, variant: int) -> tuple[Setup, float, int]:
    """Even variants sit near the threshold (m in [0, 0.25]), odd ones far past it (m in [0.75, 1])."""
    rng = random.Random(f"{scenario.name}:{engine}:{variant}")
    m = rng.uniform(0.0, 0.25) if variant % 2 == 0 else rng.uniform(0.75, 1.0)
    seed = rng.randrange(1_000_000)
    return scenario.build(engine, m, rng), m, seed


def _simulate(engine: str, setup: Setup, seed: int) -> tuple[list[RawScrape], list[bytes], dict[str, object]]:
    clock = ManualClock()
    spec = SimulatedServerSpec(
        engine=engine, seed=seed, workload=setup.workload, flags=setup.flags, hardware=setup.hardware, model=setup.model
    )
    server = SimulatedInstance(spec, f"{engine}-eval", clock)
    if server.start_error is not None:
        raise ValueError(f"{engine} refused to start with {setup.flags}: {server.start_error}")
    if setup.faults:
        server.set_faults(dict(setup.faults))
    clock.advance(WARMUP_S)
    raws: list[RawScrape] = []
    documents: list[bytes] = []
    previous: RawScrape | None = None
    engine_config: dict[str, object] = {}
    for _ in range(int(WINDOW_S // SCRAPE_S) + 1):
        adapted = adapt_page(engine, parse_page(server.metrics_text()))
        collected_at = datetime.fromtimestamp(clock(), UTC)
        snapshot = build_snapshot(
            instance_id="eval",
            engine=engine,
            endpoint="http://127.0.0.1:9",
            collected_at=collected_at,
            current=adapted,
            previous=previous,
        )
        previous = raw_scrape(adapted, collected_at)
        raws.append(previous)
        documents.append(_encoder.encode(snapshot))
        engine_config = dict(adapted.engine_config)
        clock.advance(SCRAPE_S)
    return raws, documents, engine_config


def run_variant(scenario_name: str, engine: str, variant: int) -> Outcome:
    """Simulate one variant and analyse it with the agent's own code (module-level so processes can run it)."""
    scenario = next(s for s in SCENARIOS if s.name == scenario_name)
    setup, magnitude, seed = variant_setup(scenario, engine, variant)
    raws, documents, engine_config = _simulate(engine, setup, seed)
    computed = window_figures(raws, [decode_scrape_figures(d) for d in documents], engine=engine)
    if computed is None:
        raise ValueError(f"{scenario_name}/{engine}/{variant}: the window holds no data")
    figures, _ = computed
    report = detect_bottlenecks(figures)
    significant = [f for f in report.findings if SEVERITY_RANK[f.severity] > SEVERITY_RANK["low"]]
    plan = build_plan(
        report.findings,
        engine_config,  # type: ignore[arg-type]
        engine=engine,
        engine_args={key: value for key, value in setup.flags.items() if isinstance(value, int | float | str | bool)},
        gpu=_SIM_GPU,
        model=_SIM_MODEL,
        figures=figures,
    )
    first = plan.recommendations[0] if plan.recommendations else None
    severities: dict[str, str] = {f.type: f.severity for f in significant if f.type in scenario.labels}
    return Outcome(
        scenario=scenario_name,
        engine=engine,
        variant=variant,
        magnitude=round(magnitude, 3),
        labels=sorted(t for t in scenario.labels if (engine, t) not in EXCLUDED),
        detected=sorted({f.type for f in significant if (engine, f.type) not in EXCLUDED}),
        first_recommendation=first.id if first else None,
        first_addresses=list(first.addresses) if first else [],
        summary=summarize(report),
        severities=severities,
    )
