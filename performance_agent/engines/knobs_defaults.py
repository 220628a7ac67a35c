"""Engine defaults that depend on the engine version or the GPU, resolved only when those are known.

Facts from vLLM `vllm/config/{cache,scheduler}.py` and `EngineArgs.get_batch_defaults`, and SGLang
`python/sglang/srt/server_args.py` (`_handle_gpu_memory_settings`, 2026); commits in docs/sources.md.
"""

from __future__ import annotations

from performance_agent.engines.knobs import ConfigValue, knob

__all__ = ("engine_default", "parse_version", "sglang_mem_fraction_static")


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
    gpus_per_instance: int = 1,
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
        return None if gpu_memory_gib is None else _sglang_chunked_prefill_size(gpu_memory_gib)
    if engine == "sglang" and concept == "memory_fraction":
        return None if gpu_memory_gib is None else sglang_mem_fraction_static(gpu_memory_gib, gpus_per_instance)
    return entry.default


def _sglang_chunked_prefill_size(gpu_memory_gib: float) -> int:
    for limit, size in ((35, 2048), (60, 4096), (160, 8192)):
        if gpu_memory_gib < limit:
            return size
    return 16384


def _sglang_cuda_graph_max_bs(gpu_memory_gib: float, tp: int) -> int:
    # SGLang `server_args.py` (2026): pairs read as tp < 4 / tp >= 4
    for limit, small_tp, large_tp in ((20, 8, 8), (35, 24, 80), (60, 32, 160), (160, 256, 512)):
        if gpu_memory_gib < limit:
            return small_tp if tp < 4 else large_tp
    return 512


def sglang_mem_fraction_static(gpu_memory_gib: float, tp_times_pp: int = 1) -> float:
    """SGLang's computed --mem-fraction-static (`srt/server_args.py`, 2026), without DP-attention or speculative terms.

    reserved (MB) = 512 + max(chunked_prefill_size, 2048) x 1.5 + cuda_graph_max_bs x 2 + tp x pp / 8 x 1024,
    at least 10 GiB on GPUs above 60 GiB; fraction = (memory - reserved) / memory.
    """
    memory_mb = gpu_memory_gib * 1024
    reserved = (
        512
        + max(_sglang_chunked_prefill_size(gpu_memory_gib), 2048) * 1.5
        + _sglang_cuda_graph_max_bs(gpu_memory_gib, tp_times_pp) * 2
        + tp_times_pp / 8 * 1024
    )
    if gpu_memory_gib > 60:
        reserved = max(reserved, 10 * 1024)
    return round((memory_mb - reserved) / memory_mb, 3)
