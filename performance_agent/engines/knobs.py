"""Tuning flags of vLLM, TGI and SGLang: exact CLI spellings, defaults, and where the page reveals them.

Source of every fact: the engines' own launcher docs and config code, named per table below and
listed with their commits in docs/sources.md ("Engine flags");
quantization methods are in `knobs_quantization`, defaults that depend on version or GPU in
`knobs_defaults`. The
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
    "SIGNAL_GAPS",
    "ConfigValue",
    "EngineName",
    "Knob",
    "knob",
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
    snake_case without leading dashes. `documented_defaults` lists every value the engine may pick
    by itself, which bounds an estimate when the actual one is unknown.
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
    documented_defaults: tuple[int, ...] = ()

    @property
    def spelling(self) -> str:
        """The key a plan uses: the flag, or the environment variable for env-only settings."""
        if self.flag is not None:
            return self.flag
        if self.env is not None:
            return self.env
        raise AssertionError(f"knob {self.concept} has neither a flag nor an env var")


_VLLM: tuple[Knob, ...] = (
    # vLLM `vllm/config/scheduler.py` @01230b40 (~0.11), `EngineArgs.get_batch_defaults` in `engine/arg_utils.py`
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
        documented_defaults=(2048, 8192),
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
    # vLLM `vllm/config/cache.py` @002f10e0 (2026)
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
    # vLLM `vllm/model_executor/layers/quantization/__init__.py` (~0.9 and 2026)
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
    # TGI `docs/source/reference/launcher.md`, `launcher/src/main.rs` @db931fcf (after v3.3.7)
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
    # TGI `docs/source/reference/launcher.md` @db931fcf (batching and admission)
    Knob(
        "batch_token_budget",
        "--max-batch-prefill-tokens",
        "int",
        None,
        "computed from model FLOPs or 4096, capped by context and VRAM",
        page_keys=("max_batch_prefill_tokens",),
        declared_keys=("max_batch_prefill_tokens",),
        documented_defaults=(4096, 8000, 10000),
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
    # TGI `docs/source/reference/launcher.md` @db931fcf (`--quantize`)
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
    # SGLang `docs/advanced_features/server_arguments.md` @004813e1 (2026), `srt/server_args.py`
    Knob(
        "memory_fraction",
        "--mem-fraction-static",
        "float",
        None,
        "computed from GPU memory at startup (0.88 if GPU memory is unknown); DP-attention and speculative "
        "decoding reserve more",
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
    # SGLang `docs/advanced_features/server_arguments.md` @004813e1 (batching and scheduling)
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
        documented_defaults=(2048, 4096, 8192, 16384),
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
    # SGLang `docs/advanced_features/server_arguments.md` @004813e1 (`--quantization`)
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


# What an engine's page cannot tell at all (docs/sources.md, "What a page cannot tell"); detectors say so
# instead of guessing.
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
