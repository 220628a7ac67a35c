"""Memory arithmetic: how each engine's flags turn one GPU into KV capacity, speed and limits.

Weights = parameters * bytes per weight (bf16 = 2; FP8/INT8 = half of that; 4-bit formats
about 0.28 with scales, plus a dequantization read overhead). KV bytes per token =
2 (K and V) * layers * kv_heads * head_dim * bytes per element (FP8 = 1, so FP8 KV doubles the
pool). What is left after weights and the engine's activation reserve is the KV pool; each
engine sizes that differently, and refuses to start (`StartError`, with the message the engine
would log) when the numbers do not work out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from performance_agent.simulator.knobs import EngineParams, StartError

if TYPE_CHECKING:
    from performance_agent.simulator.knobs import Flags, Hardware, SimulatedModel

__all__ = ("derive_sglang", "derive_tgi", "derive_vllm", "sglang_defaults")

GIB = float(2**30)
MIB = float(2**20)

_KV_BYTES = {"fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0, "fp8_inc": 1.0, "fp8_ds_mla": 1.0, "fp8_e4m3fn": 1.0}
_KV_BYTES |= {"nvfp4": 0.5, "fp4_e2m1": 0.5}
_FOUR_BIT = ("awq", "gptq", "marlin", "gguf", "nf4", "fp4", "mxfp4", "exl2", "moe_wna16")


def _weight_factor(quant: str | None) -> tuple[float, float]:
    """Bytes of a quantized weight relative to bf16, and the extra read/dequant cost of that format."""
    if quant is None:
        return 1.0, 0.0
    if any(part in quant for part in _FOUR_BIT):
        return 0.28, 0.45
    return 0.5, 0.1


def _model_bytes(dtype: str | None) -> float:
    return 4.0 if dtype in ("float", "float32") else 2.0


@dataclass(frozen=True, slots=True)
class _Memory:
    gpu_bytes: float
    weights: float
    overhead: float
    bandwidth: float
    flops: float


def _memory(hw: Hardware, model: SimulatedModel, parallel: int, dtype: str | None, quant: str | None) -> _Memory:
    if parallel < 1:
        raise StartError(f"parallel size must be >= 1, got {parallel}")
    factor, overhead = _weight_factor(quant)
    efficiency = 0.9 if parallel > 1 else 1.0
    return _Memory(
        gpu_bytes=hw.gpu_memory_gib * GIB * parallel,
        weights=model.params_b * 1e9 * _model_bytes(dtype) * factor,
        overhead=overhead,
        bandwidth=hw.mem_bandwidth_gb_s * 1e9 * parallel * efficiency,
        flops=hw.compute_tflops * 1e12 * parallel * efficiency,
    )


def _kv_bytes_per_token(model: SimulatedModel, kv_dtype: str | None, dtype: str | None) -> float:
    element = _KV_BYTES.get(kv_dtype or "auto", _model_bytes(dtype))
    return 2.0 * model.layers * model.kv_heads * model.head_dim * element


def derive_vllm(flags: Flags, hw: Hardware, model: SimulatedModel) -> EngineParams:
    """KV pool = memory share - weights - activation reserve (grows with the token budget), in blocks."""
    util = flags.number("gpu_memory_utilization")
    seqs, budget, block = (
        flags.integer("max_num_seqs"),
        flags.integer("max_num_batched_tokens"),
        flags.integer("block_size"),
    )
    max_len = flags.integer("max_model_len", model.max_position)
    tp = flags.integer("tensor_parallel_size", 1)
    if not 0.0 < util <= 1.0:
        raise StartError(f"GPU memory utilization must be within (0, 1]. Got {util}.")
    if seqs < 1 or block < 1 or max_len < 1:
        raise StartError("max_num_seqs, block_size and max_model_len must be positive")
    if max_len > model.max_position:
        raise StartError(f"User-specified max_model_len ({max_len}) is greater than the model's ({model.max_position})")
    if budget < seqs:
        raise StartError(f"max_num_batched_tokens ({budget}) must be greater than or equal to max_num_seqs ({seqs}).")
    if not flags.flag("enable_chunked_prefill") and budget < max_len:
        raise StartError(
            f"max_num_batched_tokens ({budget}) is smaller than max_model_len ({max_len}). "
            "Please increase max_num_batched_tokens or decrease max_model_len."
        )
    mem = _memory(hw, model, tp, flags.text("dtype"), flags.text("quantization"))
    kv_tok = _kv_bytes_per_token(model, flags.text("kv_cache_dtype"), flags.text("dtype"))
    free = mem.gpu_bytes * util - mem.weights - (tp * GIB + budget * 0.5 * MIB)
    if free <= 0:
        raise StartError(
            "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
            "initializing the engine."
        )
    blocks = flags.opt_integer("num_gpu_blocks_override")
    capacity = (int(free // (kv_tok * block)) if blocks is None else blocks) * block
    if capacity < max_len:
        raise StartError(
            f"The model's max seq len ({max_len}) is larger than the maximum number of tokens that can be "
            f"stored in KV cache ({capacity}). Try increasing `gpu_memory_utilization` or decreasing "
            "`max_model_len` when initializing the engine."
        )
    return EngineParams(
        max_running=seqs, token_budget=budget, kv_capacity_tokens=capacity, kv_bytes_per_token=kv_tok,
        weight_bytes=mem.weights, weight_read_overhead=mem.overhead, admission="allocate", reserve_ratio=0.0,
        prefix_caching=flags.flag("enable_prefix_caching"), max_model_len=max_len, max_input_tokens=max_len - 1,
        max_in_system=None, block_size=block, bandwidth_bytes_s=mem.bandwidth, compute_flops_s=mem.flops,
        params=model.params_b * 1e9, parallel=tp,
    )  # fmt: skip


def derive_tgi(flags: Flags, env: dict[str, str], hw: Hardware, model: SimulatedModel) -> EngineParams:
    """KV slots = what warmup leaves after weights and the prefill peak; requests reserve their full budget."""
    shards = flags.integer("num_shard", 1)
    total = flags.integer("max_total_tokens", model.max_position)
    max_input = flags.integer("max_input_tokens", total - 1)
    prefill = flags.integer("max_batch_prefill_tokens")
    fraction = flags.number("cuda_memory_fraction")
    if max_input >= total:
        raise StartError(f"`max_input_tokens`({max_input}) must be < `max_total_tokens`({total})")
    if not 0.0 < fraction <= 1.0:
        raise StartError(f"--cuda-memory-fraction must be within (0, 1], got {fraction}")
    if total > model.max_position:
        raise StartError(
            f"`max_total_tokens`({total}) must be <= the model's max_position_embeddings ({model.max_position})"
        )
    mem = _memory(hw, model, shards, flags.text("dtype"), flags.text("quantize"))
    kv_tok = _kv_bytes_per_token(model, flags.text("kv_cache_dtype"), flags.text("dtype"))
    free = mem.gpu_bytes * fraction * 0.98 - mem.weights - (shards * GIB + prefill * 0.5 * MIB)
    if free <= 0:
        raise StartError(
            f"Not enough memory to handle {prefill} prefill tokens. You need to decrease `--max-batch-prefill-tokens`"
        )
    inferred = int(free // kv_tok)
    requested = flags.opt_integer("max_batch_total_tokens")
    capacity = inferred if requested is None else requested
    if capacity > inferred:
        raise StartError(
            f"CUDA out of memory during warmup: --max-batch-total-tokens {capacity} needs more KV memory than "
            f"is left after loading the weights ({inferred} tokens fit)"
        )
    if capacity < total:
        raise StartError(f"`max_total_tokens`({total}) must be <= `max_batch_total_tokens`({capacity})")
    prefix = env.get("PREFIX_CACHING", "1").lower() not in ("0", "false", "no")
    return EngineParams(
        max_running=flags.integer("max_batch_size", 4096), token_budget=prefill, kv_capacity_tokens=capacity,
        kv_bytes_per_token=kv_tok, weight_bytes=mem.weights, weight_read_overhead=mem.overhead,
        admission="reserve_full", reserve_ratio=1.0, prefix_caching=prefix, max_model_len=total,
        max_input_tokens=max_input, max_in_system=flags.integer("max_concurrent_requests"), block_size=1,
        bandwidth_bytes_s=mem.bandwidth, compute_flops_s=mem.flops, params=model.params_b * 1e9, parallel=shards,
    )  # fmt: skip


def sglang_defaults(flags: Flags, hw: Hardware) -> tuple[int, int, float]:
    """SGLang's own defaults by GPU memory: chunked prefill size, CUDA-graph batch size, memory fraction."""
    gib = hw.gpu_memory_gib
    chunk = flags.integer(
        "chunked_prefill_size", 2048 if gib < 35 else 4096 if gib < 60 else 8192 if gib < 160 else 16384
    )
    graph_bs = flags.integer("cuda_graph_max_bs", 8 if gib < 20 else 24 if gib < 35 else 32 if gib < 60 else 256)
    explicit = flags.opt_number("mem_fraction_static")
    if explicit is not None:
        return chunk, graph_bs, explicit
    reserved_mb = 512 + max(chunk, 2048) * 1.5 + graph_bs * 2 + flags.integer("tp_size", 1) / 8 * 1024
    if gib > 60:
        reserved_mb = max(reserved_mb, 10 * 1024)
    return chunk, graph_bs, (gib * 1024 - reserved_mb) / (gib * 1024)


def derive_sglang(flags: Flags, hw: Hardware, model: SimulatedModel) -> EngineParams:
    """KV pool = static memory fraction - weights (activations live outside the fraction)."""
    chunk, _graph_bs, fraction = sglang_defaults(flags, hw)
    tp = flags.integer("tp_size", 1)
    max_len = flags.integer("context_length", model.max_position)
    if not 0.0 < fraction < 1.0:
        raise StartError(f"mem_fraction_static must be within (0, 1), got {fraction}")
    mem = _memory(hw, model, tp, flags.text("dtype"), flags.text("quantization"))
    kv_tok = _kv_bytes_per_token(model, flags.text("kv_cache_dtype"), flags.text("dtype"))
    free = mem.gpu_bytes * fraction - mem.weights
    if free <= 0:
        raise StartError("Not enough memory. Please try to increase --mem-fraction-static.")
    page = max(flags.integer("page_size", 1), 1)
    capacity = int(free // kv_tok) // page * page
    cap_flag = flags.opt_integer("max_total_tokens")
    if cap_flag is not None:
        capacity = min(capacity, cap_flag)
    if capacity < max_len:
        raise StartError(f"max_total_num_tokens ({capacity}) is smaller than context_length ({max_len})")
    budget = chunk if chunk > 0 else flags.integer("max_prefill_tokens")
    return EngineParams(
        max_running=flags.integer("max_running_requests", min(capacity // 2, 4096)), token_budget=max(budget, 1),
        kv_capacity_tokens=capacity, kv_bytes_per_token=kv_tok, weight_bytes=mem.weights,
        weight_read_overhead=mem.overhead, admission="reserve_ratio",
        reserve_ratio=min(1.0, 0.7 * flags.number("schedule_conservativeness")),
        prefix_caching=not flags.flag("disable_radix_cache"), max_model_len=max_len, max_input_tokens=max_len - 1,
        max_in_system=None, block_size=page, bandwidth_bytes_s=mem.bandwidth, compute_flops_s=mem.flops,
        params=model.params_b * 1e9, parallel=tp,
    )  # fmt: skip
