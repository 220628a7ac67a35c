"""KV cache options: FP8 KV cache, memory fraction, prefix caching, block/page size.

Each builder returns candidates for the findings it can help, and leaves a note when an
option was considered but not offered (already set, engine lacks the knob, value unknown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.optimization.impact import (
    Estimate,
    dtype_bytes,
    kv_capacity_change,
    kv_room_from_memory_fraction,
)
from performance_agent.optimization.schemas import Risk

if TYPE_CHECKING:
    from performance_agent.analysis.schemas import BottleneckType
    from performance_agent.optimization.context import Candidate, PlanContext

__all__ = ("FP8_KV_DTYPE", "kv_options")

# the FP8 spelling each engine accepts for --kv-cache-dtype (vLLM `config/cache.py`, TGI
# `launcher.md`, SGLang `server_arguments.md`; docs/sources.md);
# SGLang e5m2 needs no scaling factors, e4m3 would fall back to scale 1.0 without them
FP8_KV_DTYPE = {"vllm": "fp8", "tgi": "fp8_e4m3fn", "sglang": "fp8_e5m2"}
MAX_MEMORY_FRACTION = {"vllm": 0.95, "sglang": 0.92}
MEMORY_FRACTION_STEP = 0.05


def _capacity_targets(ctx: PlanContext) -> list[BottleneckType]:
    """Findings more KV room helps: pressure always, queueing when KV bounds the batch (or nobody can tell)."""
    targets: list[BottleneckType] = ["kv_cache_pressure"]
    if ctx.kv_limited() is not False:
        targets.append("queueing")
    return ctx.present(targets)


def _throughput_from_capacity(capacity: Estimate, addresses: list[BottleneckType]) -> Estimate:
    return Estimate(
        0.0,
        capacity.high,
        ["throughput gains at most what the batch gains, and only while KV bounds the batch (memory-bound decode)"]
        if addresses
        else [],
    )


def _fp8_kv_cache(ctx: PlanContext) -> Candidate | None:
    addresses = _capacity_targets(ctx)
    if not addresses:
        return None
    current = ctx.value("kv_cache_dtype")
    current_name = current if isinstance(current, str) else "auto"
    current_bytes = dtype_bytes(current_name, ctx.model_dtype)
    if current_bytes is not None and current_bytes <= 1:
        ctx.notes.append(f"FP8 KV cache not offered: the KV cache is already {current_name}")
        return None
    flag = ctx.flag("kv_cache_dtype")
    if flag is None:
        return None
    target = FP8_KV_DTYPE[ctx.engine]
    capacity = kv_capacity_change(current_bytes, 1.0)
    estimated = {
        "kv_cache_capacity_tokens": capacity,
        "generation_tokens_per_s": _throughput_from_capacity(capacity, addresses),
    }
    if ctx.figures is not None and ctx.figures.load.preemptions_per_s:
        estimated["preemptions_per_s"] = Estimate(-1.0, 0.0, ["preemptions stop once the batch fits the larger pool"])
    return ctx.build(
        slug="fp8-kv-cache",
        kind="kv_cache",
        title=f"Store the KV cache in FP8 ({flag} {target})",
        addresses=addresses,
        because="One byte per element instead of two doubles the tokens the same KV memory holds.",
        changes={flag: target},
        estimated=estimated,
        risk=Risk(
            quality="low",
            stability="low",
            notes=["keys and values are rounded to FP8; check answer quality on your own evaluation set"],
        ),
        fit={"throughput": 2, "balanced": 2, "latency": 1},
    )


def _raise_memory_fraction(ctx: PlanContext) -> Candidate | None:
    addresses = _capacity_targets(ctx)
    if not addresses:
        return None
    flag = ctx.flag("memory_fraction")
    current = ctx.number("memory_fraction")
    ceiling = MAX_MEMORY_FRACTION.get(ctx.engine)
    if flag is None or ceiling is None:
        ctx.notes.append(
            f"memory fraction not raised: {ctx.engine} already lets the engine size its KV pool to all memory "
            "(--cuda-memory-fraction defaults to 1.0)"
        )
        return None
    if current is None:
        ctx.notes.append(f"memory fraction not raised: current {flag} unknown (not on the page, not declared)")
        return None
    if current >= ceiling:
        ctx.notes.append(f"memory fraction not raised: {flag} is already {current:g} (ceiling {ceiling:g})")
        return None
    new = round(min(current + MEMORY_FRACTION_STEP, ceiling), 2)
    weight_bits, _declared = ctx.weight_bits()
    capacity = kv_room_from_memory_fraction(
        current_fraction=current,
        new_fraction=new,
        gpu_memory_gib=ctx.gpu_memory_gib,
        gpu_count=ctx.gpu_count,
        params_b=ctx.params_b,
        weight_bits=weight_bits,
        kv_pool_bytes=ctx.kv_pool_bytes(),
    )
    return ctx.build(
        slug="raise-memory-fraction",
        kind="kv_cache",
        title=f"Give the KV cache more GPU memory ({flag} {current:g} -> {new:g})",
        addresses=addresses,
        because="Memory the engine may use beyond weights and activations becomes KV blocks.",
        changes={flag: new},
        estimated={
            "kv_cache_capacity_tokens": capacity,
            "generation_tokens_per_s": _throughput_from_capacity(capacity, addresses),
        },
        risk=Risk(
            quality="low",
            stability="medium",
            notes=["less headroom for activation peaks: out-of-memory at startup or on long prompts is possible"],
        ),
        fit={"throughput": 2, "balanced": 1, "latency": 1},
    )


def _enable_prefix_caching(ctx: PlanContext) -> Candidate | None:
    addresses = ctx.present(["prefill_latency", "kv_cache_pressure", "queueing"])
    if not addresses:
        return None
    entry = ctx.config.settings.get("prefix_caching")
    if entry is None:
        return None
    if entry.value is None:
        ctx.notes.append("prefix caching not proposed: whether it is on is unknown (not on the page, not declared)")
        return None
    if entry.value is True:
        return None
    knob_flag, env = entry.flag, {}
    changes: dict[str, str | int | float | bool | None] = {}
    if ctx.engine == "tgi":
        env = {"PREFIX_CACHING": "1"}
    elif ctx.engine == "sglang":
        changes = {"--disable-radix-cache": False}
    elif knob_flag is not None:
        changes = {knob_flag: True}
    estimated: dict[str, Estimate] = {}
    assumptions = ["hit rate unknown while caching is off: it depends on how many prompts share a prefix"]
    figures = ctx.figures
    if figures is not None and figures.latency.ttft_s.mean and figures.latency.queue_s.mean is not None:
        prefill_share = max(0.0, 1.0 - figures.latency.queue_s.mean / figures.latency.ttft_s.mean)
        estimated["ttft_p99_s"] = Estimate(
            -prefill_share,
            0.0,
            [f"at best the prefill part of TTFT ({prefill_share:.0%} of it, the rest is queueing) disappears"],
        )
    else:
        assumptions.append("TTFT effect not estimated: queue time or TTFT mean unavailable")
    return ctx.build(
        slug="enable-prefix-caching",
        kind="kv_cache",
        title="Enable prefix caching",
        addresses=addresses,
        because="Prompts sharing a prefix reuse its KV blocks instead of recomputing and storing them again.",
        changes=changes,
        env=env,
        estimated=estimated,
        assumptions=assumptions,
        risk=Risk(
            quality="low",
            stability="low",
            notes=["TGI needs flashinfer or flashdecoding attention for prefix caching"] if ctx.engine == "tgi" else [],
        ),
        fit={"throughput": 2, "balanced": 2, "latency": 2},
    )


def _block_size(ctx: PlanContext) -> Candidate | None:
    """Smaller blocks waste fewer slots in each sequence's last block; worth it only for short sequences."""
    if "kv_cache_pressure" not in ctx.findings:
        return None
    flag = ctx.flag("block_size")
    block = ctx.number("block_size")
    if flag is None:
        ctx.notes.append(f"block/page size: {ctx.engine} has no flag for it (the attention backend decides)")
        return None
    if block is None or block <= 1:
        shown = f"{block:g}" if block is not None else "unknown"
        ctx.notes.append(f"block/page size: {flag} is {shown}; nothing to gain")
        return None
    figures = ctx.figures
    throughput = figures.throughput if figures else None
    if throughput is None or not throughput.requests_per_s or throughput.prompt_tokens_per_s is None:
        ctx.notes.append(f"block/page size: mean sequence length unknown, so {flag} fragmentation cannot be sized")
        return None
    generated = throughput.generation_tokens_per_s or 0.0
    resident = (throughput.prompt_tokens_per_s + generated / 2) / throughput.requests_per_s
    new_block = max(block / 2, 1)
    gain = (resident + (block - 1) / 2) / (resident + (new_block - 1) / 2) - 1
    if gain < 0.05:
        ctx.notes.append(
            f"block/page size: at a mean of {resident:.0f} resident tokens per sequence, {flag} {block:g} -> "
            f"{new_block:g} would gain only {gain:.1%} KV capacity; not recommended"
        )
        return None
    return ctx.build(
        slug="smaller-blocks",
        kind="kv_cache",
        title=f"Use smaller KV blocks ({flag} {block:g} -> {new_block:g})",
        addresses=["kv_cache_pressure"],
        because=f"Sequences average {resident:.0f} resident tokens, so half-empty last blocks waste a visible share.",
        changes={flag: int(new_block)},
        estimated={
            "kv_cache_capacity_tokens": Estimate(
                0.0, gain, ["a sequence wastes on average (block size - 1) / 2 slots in its last block"]
            )
        },
        risk=Risk(
            quality="low",
            stability="medium",
            notes=["some attention backends require block sizes in multiples of 16 and refuse smaller ones"],
        ),
        fit={"throughput": 1, "balanced": 1, "latency": 0},
    )


def _lower_memory_fraction(ctx: PlanContext) -> Candidate | None:
    addresses = ctx.present(["underutilization", "request_errors"])
    if not addresses:
        return None
    flag = ctx.flag("memory_fraction")
    current = ctx.number("memory_fraction")
    if flag is None:
        return None
    if current is None:
        ctx.notes.append(f"memory fraction not lowered: current {flag} unknown (not on the page, not declared)")
        return None
    step = 0.1 if "underutilization" in addresses else MEMORY_FRACTION_STEP
    new = round(current - step, 2)
    if new < 0.3:
        ctx.notes.append(f"memory fraction not lowered: {flag} is already {current:g}")
        return None
    weight_bits, _declared = ctx.weight_bits()
    capacity = kv_room_from_memory_fraction(
        current_fraction=current,
        new_fraction=new,
        gpu_memory_gib=ctx.gpu_memory_gib,
        gpu_count=ctx.gpu_count,
        params_b=ctx.params_b,
        weight_bits=weight_bits,
        kv_pool_bytes=ctx.kv_pool_bytes(),
    )
    estimated = {
        "gpu_memory_reserved": Estimate(new / current - 1, new / current - 1, ["the engine reserves its fraction"]),
        "kv_cache_capacity_tokens": capacity,
    }
    because = []
    if "underutilization" in addresses:
        because.append("The KV pool is mostly empty; the freed memory can host another model or replica.")
    if "request_errors" in addresses:
        because.append("Headroom for activation peaks prevents out-of-memory failures.")
        estimated["error_rate"] = Estimate(
            -1.0, 0.0, ["errors fall only in so far as they are out-of-memory failures; the page cannot tell"]
        )
    return ctx.build(
        slug="lower-memory-fraction",
        kind="kv_cache",
        title=f"Reserve less GPU memory ({flag} {current:g} -> {new:g})",
        addresses=addresses,
        because=" ".join(because),
        changes={flag: new},
        estimated=estimated,
        risk=Risk(
            quality="low",
            stability="medium",
            notes=["a smaller KV pool preempts or queues sooner if the load grows"],
        ),
        fit={"throughput": 1, "balanced": 1, "latency": 1},
    )


def kv_options(ctx: PlanContext) -> list[Candidate]:
    builders = (_fp8_kv_cache, _raise_memory_fraction, _enable_prefix_caching, _block_size, _lower_memory_fraction)
    return [c for c in (build(ctx) for build in builders) if c is not None]
