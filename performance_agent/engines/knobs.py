"""Tuning flags of vLLM, TGI and SGLang: exact CLI spellings, defaults, and where the page reveals them.

Source of every fact: `../shared/reference/engine-knobs.md` (sections cited per entry). The
planner speaks engine-neutral concepts (`max_running_requests`, `memory_fraction`, ...) and
asks this table how the engine spells them, so a new engine is one new table here.
All these flags are launch-time arguments: changing any of them restarts the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = (
    "ENGINES",
    "KNOBS",
    "QUANTIZATION_METHODS",
    "SIGNAL_GAPS",
    "ConfigValue",
    "EngineName",
    "Knob",
    "QuantizationMethod",
    "QuantizationOption",
    "engine_default",
    "knob",
    "parse_version",
    "signal_gap",
)

EngineName = Literal["vllm", "tgi", "sglang"]
ENGINES: tuple[EngineName, ...] = ("vllm", "tgi", "sglang")
ConfigValue = str | int | float | bool | None
KnobKind = Literal["bool", "int", "float", "choice"]


@dataclass(frozen=True, slots=True)
class Knob:
    """One engine setting. `flag` is the positive spelling; booleans are `true` = pass the flag.

    `env` marks settings that are environment variables rather than flags (TGI `PREFIX_CACHING`).
    `page_keys` are the `engine_config` keys under which a `/metrics` page reveals the current
    value (vLLM `cache_config_info` labels, TGI `tgi_batch_max_total_tokens`, SGLang gauges).
    `declared_keys` are the spellings accepted from registration `engine_args`, normalized to
    snake_case without leading dashes.
    """

    concept: str
    flag: str | None
    kind: KnobKind
    default: ConfigValue
    default_note: str
    negative_flag: str | None = None
    env: str | None = None
    env_true: str = "1"
    env_false: str = "0"
    page_keys: tuple[str, ...] = ()
    declared_keys: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    inverted: bool = False

    @property
    def spelling(self) -> str:
        """The key a plan uses: the flag, or the environment variable for env-only settings."""
        if self.flag is not None:
            return self.flag
        if self.env is not None:
            return self.env
        raise AssertionError(f"knob {self.concept} has neither a flag nor an env var")


_VLLM: tuple[Knob, ...] = (
    # engine-knobs.md §1.2
    Knob(
        "max_running_requests",
        "--max-num-seqs",
        "int",
        None,
        "1024 on GPUs with >=70 GiB other than A100, else 256 (older V1 releases: 256)",
        declared_keys=("max_num_seqs",),
    ),
    Knob(
        "batch_token_budget",
        "--max-num-batched-tokens",
        "int",
        None,
        "vllm serve: 8192 on GPUs with >=70 GiB other than A100, else 2048",
        declared_keys=("max_num_batched_tokens",),
    ),
    Knob(
        "chunked_prefill",
        "--enable-chunked-prefill",
        "bool",
        None,
        "enabled in the V1 engine (vLLM >= 0.8); V0 decides by model length",
        negative_flag="--no-enable-chunked-prefill",
        declared_keys=("enable_chunked_prefill",),
    ),
    # engine-knobs.md §1.1
    Knob(
        "memory_fraction",
        "--gpu-memory-utilization",
        "float",
        None,
        "0.9 up to at least ~0.12; 0.92 in the 2026 source",
        page_keys=("gpu_memory_utilization",),
        declared_keys=("gpu_memory_utilization",),
    ),
    Knob(
        "block_size",
        "--block-size",
        "int",
        16,
        "16 (CacheConfig.DEFAULT_BLOCK_SIZE); some backends override",
        page_keys=("block_size",),
        declared_keys=("block_size",),
    ),
    Knob(
        "kv_cache_dtype",
        "--kv-cache-dtype",
        "choice",
        "auto",
        "auto = model dtype",
        page_keys=("cache_dtype", "kv_cache_dtype"),
        declared_keys=("kv_cache_dtype",),
        choices=("auto", "fp8", "fp8_e4m3", "fp8_e5m2"),
    ),
    Knob(
        "prefix_caching",
        "--enable-prefix-caching",
        "bool",
        None,
        "enabled in the V1 engine (vLLM >= 0.8), disabled in V0",
        negative_flag="--no-enable-prefix-caching",
        page_keys=("enable_prefix_caching",),
        declared_keys=("enable_prefix_caching",),
    ),
    Knob(
        "kv_pool_tokens",
        None,
        "int",
        None,
        "derived at startup from memory left after weights",
        page_keys=("kv_cache_size_tokens",),
    ),
    Knob(
        "kv_pool_blocks",
        None,
        "int",
        None,
        "derived at startup from memory left after weights",
        page_keys=("num_gpu_blocks",),
    ),
    # engine-knobs.md §1.3
    Knob(
        "quantization",
        "--quantization",
        "choice",
        None,
        "none (pre-quantized checkpoints are detected from config.json)",
        declared_keys=("quantization", "q"),
    ),
)

_TGI: tuple[Knob, ...] = (
    # engine-knobs.md §2.1
    Knob(
        "kv_pool_tokens",
        "--max-batch-total-tokens",
        "int",
        None,
        "inferred at warmup: the largest value that fits",
        page_keys=("max_batch_total_tokens", "tgi_batch_max_total_tokens"),
        declared_keys=("max_batch_total_tokens",),
    ),
    Knob(
        "memory_fraction",
        "--cuda-memory-fraction",
        "float",
        1.0,
        "1.0",
        declared_keys=("cuda_memory_fraction",),
    ),
    Knob(
        "kv_cache_dtype",
        "--kv-cache-dtype",
        "choice",
        None,
        "model dtype",
        declared_keys=("kv_cache_dtype",),
        choices=("fp8_e4m3fn", "fp8_e5m2"),
    ),
    Knob(
        "prefix_caching",
        None,
        "bool",
        True,
        "on unless VLM, seq2seq, LoRA adapters or paged attention",
        env="PREFIX_CACHING",
        page_keys=("prefix_caching",),
        declared_keys=("prefix_caching",),
    ),
    # engine-knobs.md §2.2
    Knob(
        "batch_token_budget",
        "--max-batch-prefill-tokens",
        "int",
        None,
        "computed from model FLOPs or 4096, capped by context and VRAM",
        page_keys=("max_batch_prefill_tokens",),
        declared_keys=("max_batch_prefill_tokens",),
    ),
    Knob(
        "max_concurrent_requests",
        "--max-concurrent-requests",
        "int",
        128,
        "128; beyond it requests are rejected with HTTP 429",
        page_keys=("max_concurrent_requests",),
        declared_keys=("max_concurrent_requests",),
    ),
    Knob(
        "waiting_served_ratio",
        "--waiting-served-ratio",
        "float",
        0.3,
        "0.3",
        declared_keys=("waiting_served_ratio",),
    ),
    Knob(
        "max_waiting_tokens",
        "--max-waiting-tokens",
        "int",
        20,
        "20 decode steps",
        declared_keys=("max_waiting_tokens",),
    ),
    # engine-knobs.md §2.3
    Knob(
        "quantization",
        "--quantize",
        "choice",
        None,
        "none (pre-quantized checkpoints need no flag)",
        declared_keys=("quantize",),
    ),
)

_SGLANG: tuple[Knob, ...] = (
    # engine-knobs.md §3.1
    Knob(
        "memory_fraction",
        "--mem-fraction-static",
        "float",
        None,
        "computed from GPU memory at startup (0.88 if GPU memory is unknown)",
        declared_keys=("mem_fraction_static",),
    ),
    Knob(
        "kv_pool_tokens",
        "--max-total-tokens",
        "int",
        None,
        "derived from memory",
        page_keys=("max_total_num_tokens",),
        declared_keys=("max_total_tokens",),
    ),
    Knob(
        "block_size",
        "--page-size",
        "int",
        1,
        "1",
        page_keys=("page_size",),
        declared_keys=("page_size",),
    ),
    Knob(
        "kv_cache_dtype",
        "--kv-cache-dtype",
        "choice",
        "auto",
        "auto",
        declared_keys=("kv_cache_dtype",),
        choices=("auto", "fp8_e5m2", "fp8_e4m3"),
    ),
    Knob(
        "prefix_caching",
        "--disable-radix-cache",
        "bool",
        True,
        "radix (prefix) cache on; the only spelling is the disabling flag",
        declared_keys=("disable_radix_cache",),
        inverted=True,
    ),
    # engine-knobs.md §3.2
    Knob(
        "max_running_requests",
        "--max-running-requests",
        "int",
        None,
        "derived from the KV pool and CUDA-graph settings",
        page_keys=("max_running_requests",),
        declared_keys=("max_running_requests",),
    ),
    Knob(
        "batch_token_budget",
        "--chunked-prefill-size",
        "int",
        None,
        "by GPU memory: 2048 (<35 GiB), 4096 (<60 GiB), 8192 (<160 GiB), 16384 (larger); -1 disables chunking",
        declared_keys=("chunked_prefill_size",),
    ),
    Knob(
        "max_prefill_tokens",
        "--max-prefill-tokens",
        "int",
        16384,
        "16384",
        page_keys=("max_prefill_tokens",),
        declared_keys=("max_prefill_tokens",),
    ),
    Knob(
        "schedule_conservativeness",
        "--schedule-conservativeness",
        "float",
        1.0,
        "1.0; raise it when requests are retracted often",
        declared_keys=("schedule_conservativeness",),
    ),
    # engine-knobs.md §3.3
    Knob(
        "quantization",
        "--quantization",
        "choice",
        None,
        "none",
        declared_keys=("quantization",),
    ),
)

KNOBS: dict[str, dict[str, Knob]] = {
    "vllm": {k.concept: k for k in _VLLM},
    "tgi": {k.concept: k for k in _TGI},
    "sglang": {k.concept: k for k in _SGLANG},
}


def knob(engine: str, concept: str) -> Knob | None:
    """The engine's spelling of a concept, or None when the engine has no such setting."""
    return KNOBS.get(engine, {}).get(concept)


QuantizationMethod = Literal["fp8", "int8", "int4_awq", "int4_gptq"]


@dataclass(frozen=True, slots=True)
class QuantizationOption:
    """How one engine serves one quantization method.

    `needs_checkpoint` is true when the engine cannot quantize a 16-bit checkpoint on the fly,
    so the change is a new model artifact, not a flag flip.
    """

    flag_value: str
    needs_checkpoint: bool
    weight_bits: int
    hardware_note: str
    quality_risk: Literal["low", "medium", "high"]


QUANTIZATION_METHODS: dict[str, dict[QuantizationMethod, QuantizationOption]] = {
    # engine-knobs.md §1.3: fp8 = dynamic FP8 from a BF16 checkpoint (Hopper/Ada+); INT8 W8A8 and
    # W4A16 come as compressed-tensors / AWQ / GPTQ checkpoints (Marlin kernels).
    "vllm": {
        "fp8": QuantizationOption("fp8", False, 8, "FP8 needs compute capability >= 8.9 (Ada, Hopper or newer)", "low"),
        "int8": QuantizationOption(
            "compressed-tensors", True, 8, "INT8 W8A8 kernels need compute capability >= 7.5", "medium"
        ),
        "int4_awq": QuantizationOption(
            "awq_marlin", True, 4, "Marlin kernels need compute capability >= 8.0", "medium"
        ),
        "int4_gptq": QuantizationOption(
            "gptq_marlin", True, 4, "Marlin kernels need compute capability >= 8.0", "medium"
        ),
    },
    # engine-knobs.md §2.3: fp8 (e4m3, H100+); eetq = on-the-fly 8-bit; awq/gptq need quantized checkpoints.
    "tgi": {
        "fp8": QuantizationOption("fp8", False, 8, "FP8 needs an H100-class GPU or newer", "low"),
        "int8": QuantizationOption("eetq", False, 8, "EETQ int8 weight-only kernels (CUDA)", "low"),
        "int4_awq": QuantizationOption(
            "awq", True, 4, "AWQ kernels (Marlin used automatically where supported)", "medium"
        ),
        "int4_gptq": QuantizationOption(
            "gptq", True, 4, "GPTQ kernels (Marlin used automatically where supported)", "medium"
        ),
    },
    # engine-knobs.md §3.3: fp8 online; w8a8_int8 and awq/gptq need quantized checkpoints.
    "sglang": {
        "fp8": QuantizationOption("fp8", False, 8, "FP8 needs compute capability >= 8.9 (Ada, Hopper or newer)", "low"),
        "int8": QuantizationOption("w8a8_int8", True, 8, "INT8 W8A8 kernels", "medium"),
        "int4_awq": QuantizationOption(
            "awq_marlin", True, 4, "Marlin kernels need compute capability >= 8.0", "medium"
        ),
        "int4_gptq": QuantizationOption(
            "gptq_marlin", True, 4, "Marlin kernels need compute capability >= 8.0", "medium"
        ),
    },
}

# What an engine's page cannot tell at all (engine-metrics.md §4); detectors say so instead of guessing.
SIGNAL_GAPS: dict[str, dict[str, str]] = {
    "tgi": {
        "kv_cache_usage": (
            "TGI exposes no KV cache usage; tgi_batch_current_max_tokens / tgi_batch_max_total_tokens "
            "counts tokens reserved for the batch, not tokens in use"
        ),
        "preemptions_per_s": (
            "TGI has no preemption metric (it pauses decoding to prefill waiting requests instead of preempting)"
        ),
    },
}


def signal_gap(engine: str, signal: str) -> str | None:
    """Why `engine` cannot provide `signal`, or None when it can."""
    return SIGNAL_GAPS.get(engine, {}).get(signal)


def parse_version(version: str | None) -> tuple[int, ...] | None:
    """Leading numeric components of a version string ("0.8.5.post1" -> (0, 8, 5)); None if unreadable."""
    if not version:
        return None
    parts: list[int] = []
    for piece in version.lstrip("vV").split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts) or None


def _is_large_non_a100(gpu_name: str | None, gpu_memory_gib: float | None) -> bool | None:
    if gpu_memory_gib is None:
        return None
    if gpu_memory_gib < 70:
        return False
    if gpu_name is None:
        return None
    return "a100" not in gpu_name.lower()


def engine_default(
    engine: str,
    concept: str,
    engine_version: str | None,
    gpu_name: str | None,
    gpu_memory_gib: float | None,
) -> ConfigValue:
    """The value the engine picks when the flag is not given, or None where it cannot be known.

    Defaults that depend on version or GPU are resolved only when those are known: a default
    that differs between releases is reported as unknown rather than picked.
    """
    entry = knob(engine, concept)
    if entry is None:
        return None
    version = parse_version(engine_version)
    if engine == "vllm":
        large = _is_large_non_a100(gpu_name, gpu_memory_gib)
        if concept == "max_running_requests":
            # 1024 only in recent releases on large GPUs; older V1 releases used 256 everywhere.
            return 256 if large is False else None
        if concept == "batch_token_budget":
            return None if large is None else (8192 if large else 2048)
        if concept in ("prefix_caching", "chunked_prefill"):
            if version is None:
                return None
            if version >= (0, 8):
                return True
            return False if concept == "prefix_caching" else None
        if concept == "memory_fraction":
            return 0.9 if version is not None and version < (0, 13) else None
    if engine == "sglang" and concept == "batch_token_budget":
        if gpu_memory_gib is None:
            return None
        for limit, size in ((35, 2048), (60, 4096), (160, 8192)):
            if gpu_memory_gib < limit:
                return size
        return 16384
    return entry.default
