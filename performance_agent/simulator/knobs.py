"""Launch flags of each simulated engine: names, types, defaults, and parsing as the engine's CLI would.

Flag names, defaults and value sets come from the engines' launcher docs and config code (docs/sources.md,
"Engine flags"). The engines
are told apart only by their own flag spellings; `capacity.py` turns each engine's flags into the
same engine-neutral `EngineParams` the load model runs on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = (
    "ENGINE_KNOBS",
    "EngineParams",
    "Flags",
    "Hardware",
    "KnobSpec",
    "SimulatedModel",
    "StartError",
    "canonical_knob",
    "coerce_value",
    "flag_spelling",
)

KnobType = Literal["int", "float", "str", "bool"]
Admission = Literal["allocate", "reserve_ratio", "reserve_full"]


class StartError(Exception):
    """The engine would refuse to start with these flags (the message is what it would log)."""


@dataclass(frozen=True, slots=True)
class KnobSpec:
    """One launch flag: its canonical name (`max_num_seqs`), type, default and allowed values."""

    name: str
    type: KnobType
    default: int | float | str | bool | None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Hardware:
    """One GPU (A100-40GB-like by default); tensor parallelism multiplies it."""

    gpu_memory_gib: float = 40.0
    mem_bandwidth_gb_s: float = 1555.0
    compute_tflops: float = 230.0
    step_overhead_s: float = 0.004


@dataclass(frozen=True, slots=True)
class SimulatedModel:
    """Llama-3.1-8B-shaped by default; `max_position` is the simulated context limit."""

    name: str = "meta-llama/Llama-3.1-8B-Instruct"
    params_b: float = 8.03
    layers: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    max_position: int = 8192


@dataclass(frozen=True, slots=True)
class EngineParams:
    """Engine-neutral physics of one running server, derived from its flags."""

    max_running: int
    token_budget: int
    kv_capacity_tokens: int
    kv_bytes_per_token: float
    weight_bytes: float
    weight_read_overhead: float
    admission: Admission
    reserve_ratio: float
    prefix_caching: bool
    max_model_len: int
    max_input_tokens: int
    max_in_system: int | None
    block_size: int
    bandwidth_bytes_s: float
    compute_flops_s: float
    params: float
    parallel: int


_VLLM_KV = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla", "float16", "bfloat16", "nvfp4")
_VLLM_QUANT = (
    "awq", "awq_marlin", "gptq", "gptq_marlin", "marlin", "fp8", "fbgemm_fp8", "modelopt", "modelopt_fp4",
    "compressed-tensors", "bitsandbytes", "gguf", "experts_int8", "mxfp4", "torchao", "quark", "inc",
)  # fmt: skip
_TGI_QUANT = (
    "awq", "compressed-tensors", "eetq", "exl2", "gptq", "marlin", "bitsandbytes", "bitsandbytes-nf4",
    "bitsandbytes-fp4", "fp8",
)  # fmt: skip
_SGLANG_KV = ("auto", "fp8_e5m2", "fp8_e4m3", "bf16", "bfloat16", "fp4_e2m1")
_SGLANG_QUANT = (
    "awq", "fp8", "gptq", "marlin", "gptq_marlin", "awq_marlin", "bitsandbytes", "gguf", "modelopt", "modelopt_fp8",
    "modelopt_fp4", "w8a8_int8", "w8a8_fp8", "moe_wna16", "mxfp4", "mxfp8", "compressed-tensors",
)  # fmt: skip
_DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")

ENGINE_KNOBS: dict[str, tuple[KnobSpec, ...]] = {
    "vllm": (
        KnobSpec("max_num_seqs", "int", 256),
        KnobSpec("max_num_batched_tokens", "int", 2048),
        KnobSpec("gpu_memory_utilization", "float", 0.9),
        KnobSpec("kv_cache_dtype", "str", "auto", _VLLM_KV),
        KnobSpec("quantization", "str", None, _VLLM_QUANT),
        KnobSpec("dtype", "str", "auto", _DTYPES),
        KnobSpec("block_size", "int", 16),
        KnobSpec("enable_prefix_caching", "bool", True),
        KnobSpec("enable_chunked_prefill", "bool", True),
        KnobSpec("max_model_len", "int", None),
        KnobSpec("num_gpu_blocks_override", "int", None),
        KnobSpec("tensor_parallel_size", "int", 1),
        KnobSpec("data_parallel_size", "int", 1),
        KnobSpec("served_model_name", "str", None),
    ),
    "tgi": (
        KnobSpec("max_concurrent_requests", "int", 128),
        KnobSpec("max_batch_total_tokens", "int", None),
        KnobSpec("max_batch_prefill_tokens", "int", 4096),
        KnobSpec("max_total_tokens", "int", None),
        KnobSpec("max_input_tokens", "int", None),
        KnobSpec("max_batch_size", "int", None),
        KnobSpec("waiting_served_ratio", "float", 0.3),
        KnobSpec("max_waiting_tokens", "int", 20),
        KnobSpec("cuda_memory_fraction", "float", 1.0),
        KnobSpec("kv_cache_dtype", "str", None, ("fp8_e4m3fn", "fp8_e5m2")),
        KnobSpec("quantize", "str", None, _TGI_QUANT),
        KnobSpec("dtype", "str", None, ("float16", "bfloat16")),
        KnobSpec("num_shard", "int", 1),
        KnobSpec("model_id", "str", None),
    ),
    "sglang": (
        KnobSpec("max_running_requests", "int", None),
        KnobSpec("mem_fraction_static", "float", None),
        KnobSpec("max_total_tokens", "int", None),
        KnobSpec("chunked_prefill_size", "int", None),
        KnobSpec("max_prefill_tokens", "int", 16384),
        KnobSpec("page_size", "int", 1),
        KnobSpec("kv_cache_dtype", "str", "auto", _SGLANG_KV),
        KnobSpec("quantization", "str", None, _SGLANG_QUANT),
        KnobSpec("dtype", "str", "auto", _DTYPES),
        KnobSpec("disable_radix_cache", "bool", False),
        KnobSpec("schedule_conservativeness", "float", 1.0),
        KnobSpec("schedule_policy", "str", "fcfs", ("lpm", "random", "fcfs", "dfs-weight", "lof", "priority")),
        KnobSpec("cuda_graph_max_bs", "int", None),
        KnobSpec("context_length", "int", None),
        KnobSpec("tp_size", "int", 1),
        KnobSpec("served_model_name", "str", None),
    ),
}


def canonical_knob(key: str) -> str:
    """`--max-num-seqs`, `max-num-seqs` and `MAX_NUM_SEQS` all name `max_num_seqs`."""
    return key.strip().lstrip("-").replace("-", "_").lower()


def flag_spelling(name: str) -> str:
    """The CLI spelling every one of the three engines uses for a canonical knob name."""
    return "--" + name.replace("_", "-")


def coerce_value(spec: KnobSpec, value: object) -> int | float | str | bool | None:
    """Turn a JSON value into the flag's type the way the engine's argument parser would.

    Raises ValueError with an argparse-like message for values the engine would reject.
    """
    flag = flag_spelling(spec.name)
    if value is None:
        return None
    if spec.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"argument {flag}: expected true or false, got {value!r}")
    if spec.type == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"argument {flag}: invalid int value: {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"argument {flag}: invalid int value: {value!r}") from None
    if spec.type == "float":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"argument {flag}: invalid float value: {value!r}")
        try:
            number_f = float(value)
        except ValueError:
            raise ValueError(f"argument {flag}: invalid float value: {value!r}") from None
        if not math.isfinite(number_f):
            raise ValueError(f"argument {flag}: invalid float value: {value!r}")
        return number_f
    text = str(value)
    if spec.choices and text not in spec.choices:
        raise ValueError(f"argument {flag}: invalid choice: {text!r} (choose from {', '.join(spec.choices)})")
    return text


class Flags:
    """Resolved launch flags (defaults filled in) with typed reads, so derivations stay readable."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, int | float | str | bool | None]) -> None:
        self.values = values

    def integer(self, name: str, fallback: int = 0) -> int:
        value = self.values.get(name)
        return fallback if value is None else int(value)

    def opt_integer(self, name: str) -> int | None:
        value = self.values.get(name)
        return None if value is None else int(value)

    def number(self, name: str) -> float:
        value = self.values.get(name)
        return 0.0 if value is None else float(value)

    def opt_number(self, name: str) -> float | None:
        value = self.values.get(name)
        return None if value is None else float(value)

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return None if value is None else str(value)

    def flag(self, name: str) -> bool:
        return bool(self.values.get(name))
