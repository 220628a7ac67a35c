"""Weight quantization options: FP8, INT8 and INT4 (AWQ, GPTQ as the alternative), where the engine serves them.

Smaller weights free memory for KV (more batch) and cut the bytes each decode step reads.
Methods the engine cannot apply to a 16-bit checkpoint are advised but not executable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.engines.knobs import knob
from performance_agent.engines.knobs_quantization import QUANTIZATION_METHODS, QuantizationMethod
from performance_agent.optimization.hardware import supports_fp8, supports_marlin
from performance_agent.optimization.impact import INT4_EFFECTIVE_BITS, Estimate, kv_room_from_quantization
from performance_agent.optimization.schemas import RISK_RANK, Risk

if TYPE_CHECKING:
    from performance_agent.analysis.schemas import BottleneckType
    from performance_agent.optimization.context import Candidate, PlanContext

__all__ = ("quantization_options",)

_TITLES: dict[QuantizationMethod, str] = {
    "fp8": "Serve FP8 weights",
    "int8": "Serve INT8 weights",
    "int4_awq": "Serve INT4 weights (AWQ; GPTQ works the same way)",
}
# W8A8 methods run the matrix multiplies themselves in 8 bits, so prefill gets faster too;
# weight-only methods (EETQ, AWQ, GPTQ) compute in 16 bits and only save memory traffic
_COMPUTE_IN_8_BITS = {"fp8", "compressed-tensors", "w8a8_int8"}


def _usable_gib(ctx: PlanContext) -> float | None:
    memory = ctx.gpu_memory_gib
    fraction = ctx.number("memory_fraction")
    if memory is None:
        return None
    return memory * ctx.gpu_count * (fraction if fraction is not None else 0.9)


def _already_quantized(ctx: PlanContext) -> str | None:
    declared = ctx.value("quantization")
    model = ctx.config.model
    for value in (declared, model.quantization if model else None):
        if isinstance(value, str) and value.lower() not in ("", "none"):
            return value
    return None


def _option(ctx: PlanContext, method: QuantizationMethod, addresses: list[BottleneckType]) -> Candidate | None:
    option = QUANTIZATION_METHODS[ctx.engine][method]
    entry = knob(ctx.engine, "quantization")
    if entry is None or entry.flag is None:
        return None
    if RISK_RANK[option.quality_risk] > RISK_RANK[ctx.constraints.max_quality_risk]:
        ctx.notes.append(
            f"{method} not offered: quality risk {option.quality_risk} exceeds max_quality_risk "
            f"{ctx.constraints.max_quality_risk}"
        )
        return None
    hardware = supports_fp8(ctx.gpu_name) if method == "fp8" else supports_marlin(ctx.gpu_name)
    if hardware is False:
        ctx.notes.append(f"{method} not offered: {ctx.gpu_name} cannot run it ({option.hardware_note})")
        return None
    current_bits, bits_declared = ctx.weight_bits()
    new_bits = INT4_EFFECTIVE_BITS if option.weight_bits == 4 else float(option.weight_bits)
    ratio = new_bits / current_bits
    if ratio >= 1:
        return None
    targets = list(addresses)
    if option.flag_value in _COMPUTE_IN_8_BITS:
        targets = ctx.present([*targets, "prefill_latency"])
    assumptions = [option.hardware_note + ("" if hardware else "; the GPU is not declared, so this is unchecked")]
    if not bits_declared:
        assumptions.append("served checkpoint assumed 16-bit (model dtype not declared)")
    if option.needs_checkpoint:
        assumptions.append(
            f"needs a {method.replace('_', ' ').upper()} checkpoint of the model: the flag alone does not quantize"
        )
    if method == "int4_awq":
        gptq = QUANTIZATION_METHODS[ctx.engine]["int4_gptq"]
        assumptions.append(f"with a GPTQ checkpoint use {entry.flag} {gptq.flag_value} instead")
    estimated = {
        "weight_memory_bytes": Estimate(ratio - 1, ratio - 1, [f"{current_bits:g} -> {new_bits:g} bits per weight"]),
        "kv_cache_capacity_tokens": kv_room_from_quantization(
            current_bits=current_bits,
            new_bits=new_bits,
            params_b=ctx.params_b,
            usable_gib=_usable_gib(ctx),
            kv_pool_bytes=ctx.kv_pool_bytes(),
        ),
        "itl_p99_s": Estimate(
            ratio - 1,
            0.0,
            ["memory-bound decode reads every weight once per step: at best ITL shrinks with the weight bytes"],
        ),
        "generation_tokens_per_s": Estimate(0.0, 1 / ratio - 1, ["the reverse of the ITL bound"]),
    }
    if option.flag_value in _COMPUTE_IN_8_BITS:
        estimated["ttft_p99_s"] = Estimate(
            -0.5, 0.0, ["8-bit tensor cores do twice the dense math of 16-bit ones; prefill is compute-bound"]
        )
    risk_notes = ["re-evaluate answer quality on your own evaluation set before full rollout"]
    if option.needs_checkpoint:
        risk_notes.append("not executable as a flag flip: a new model artifact must be produced and deployed")
    fit = {"fp8": (2, 2, 2), "int8": (1, 1, 1), "int4_awq": (2, 1, 1)}[method]
    return ctx.build(
        slug=method.replace("_", "-"),
        kind="quantization",
        title=f"{_TITLES[method]} ({entry.flag} {option.flag_value})",
        addresses=targets,
        because=(
            f"Weights shrink to {ratio:.0%} of their size: the freed memory becomes KV room and each decode "
            "step reads fewer bytes."
        ),
        changes={entry.flag: option.flag_value},
        estimated=estimated,
        assumptions=assumptions,
        risk=Risk(quality=option.quality_risk, stability="low", notes=risk_notes),
        executable=not option.needs_checkpoint,
        fit={"throughput": fit[0], "balanced": fit[1], "latency": fit[2]},
        unverified=hardware is None,
    )


def quantization_options(ctx: PlanContext) -> list[Candidate]:
    wanted: list[BottleneckType] = ["kv_cache_pressure", "decode_latency", "underutilization"]
    if ctx.kv_limited() is not False:
        wanted.append("queueing")
    addresses = ctx.present(wanted)
    if not addresses and "prefill_latency" not in ctx.findings:
        return []
    if not ctx.constraints.allow_quantization:
        ctx.notes.append("quantization not offered: constraints.allow_quantization is false")
        return []
    existing = _already_quantized(ctx)
    if existing is not None:
        ctx.notes.append(f"quantization not offered: the model is already served with {existing}")
        return []
    methods: tuple[QuantizationMethod, ...] = ("fp8", "int8", "int4_awq")
    return [c for c in (_option(ctx, m, addresses) for m in methods) if c is not None and c.recommendation.addresses]
