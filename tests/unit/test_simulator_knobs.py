"""Flag parsing and the memory arithmetic behind each engine's KV pool, checked by hand."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from performance_agent.simulator.capacity import derive_sglang, derive_tgi, derive_vllm, sglang_defaults
from performance_agent.simulator.knobs import (
    ENGINE_KNOBS,
    EngineParams,
    Flags,
    Hardware,
    KnobSpec,
    SimulatedModel,
    StartError,
    canonical_knob,
    coerce_value,
    flag_spelling,
)

GIB = 2**30
LLAMA_8B_KV_BYTES = 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 KV heads, head_dim 128, bf16


def flags(engine: str, **overrides: int | float | str | bool | None) -> Flags:
    values: dict[str, int | float | str | bool | None] = {k.name: k.default for k in ENGINE_KNOBS[engine]}
    values.update(overrides)
    return Flags(values)


@pytest.mark.parametrize("key", ["--max-num-seqs", "max_num_seqs", "max-num-seqs", "MAX_NUM_SEQS", " --max-num-seqs "])
def test_every_spelling_names_the_same_knob(key: str) -> None:
    assert canonical_knob(key) == "max_num_seqs"
    assert flag_spelling("max_num_seqs") == "--max-num-seqs"


@pytest.mark.parametrize(
    ("spec", "raw", "expected"),
    [
        (KnobSpec("n", "int", 1), "64", 64),
        (KnobSpec("n", "int", 1), 64.0, 64),
        (KnobSpec("f", "float", 0.9), "0.85", 0.85),
        (KnobSpec("f", "float", 0.9), 1, 1.0),
        (KnobSpec("b", "bool", True), "false", False),
        (KnobSpec("b", "bool", True), "1", True),
        (KnobSpec("b", "bool", False), True, True),
        (KnobSpec("s", "str", "auto", ("auto", "fp8")), "fp8", "fp8"),
        (KnobSpec("s", "str", None), None, None),
    ],
)
def test_values_are_coerced_like_the_engine_cli(spec: KnobSpec, raw: object, expected: object) -> None:
    assert coerce_value(spec, raw) == expected


@pytest.mark.parametrize(
    ("spec", "raw", "message"),
    [
        (KnobSpec("n", "int", 1), "many", "argument --n: invalid int value: 'many'"),
        (KnobSpec("n", "int", 1), 2.5, "invalid int value"),
        (KnobSpec("n", "int", 1), True, "invalid int value"),
        (KnobSpec("f", "float", 0.9), "high", "invalid float value"),
        (KnobSpec("f", "float", 0.9), float("nan"), "invalid float value"),
        (KnobSpec("f", "float", 0.9), [0.5], "invalid float value"),
        (KnobSpec("b", "bool", True), "maybe", "expected true or false"),
        (KnobSpec("s", "str", "auto", ("auto", "fp8")), "int3", "invalid choice: 'int3'"),
    ],
)
def test_values_the_engine_cli_would_reject(spec: KnobSpec, raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        coerce_value(spec, raw)


def test_vllm_pool_is_memory_share_minus_weights_minus_activation_reserve() -> None:
    params = derive_vllm(flags("vllm"), Hardware(), SimulatedModel())
    free = 40 * GIB * 0.9 - 8.03e9 * 2 - (1 * GIB + 2048 * 0.5 * 2**20)
    blocks = int(free // (LLAMA_8B_KV_BYTES * 16))
    assert params.kv_bytes_per_token == LLAMA_8B_KV_BYTES == 131072
    assert params.kv_capacity_tokens == blocks * 16 == 155984
    assert params.weight_bytes == pytest.approx(16.06e9)
    fp8 = derive_vllm(flags("vllm", kv_cache_dtype="fp8"), Hardware(), SimulatedModel())
    assert fp8.kv_bytes_per_token == LLAMA_8B_KV_BYTES / 2
    assert fp8.kv_capacity_tokens == int(free // (LLAMA_8B_KV_BYTES / 2 * 16)) * 16
    fp32_flags = flags("vllm", dtype="float32", gpu_memory_utilization=1.0)
    fp32 = derive_vllm(fp32_flags, Hardware(gpu_memory_gib=80), SimulatedModel())
    assert fp32.weight_bytes == pytest.approx(8.03e9 * 4)
    assert fp32.kv_bytes_per_token == LLAMA_8B_KV_BYTES * 2


def test_tensor_parallelism_pools_memory_and_bandwidth() -> None:
    one = derive_vllm(flags("vllm"), Hardware(), SimulatedModel())
    two = derive_vllm(flags("vllm", tensor_parallel_size=2), Hardware(), SimulatedModel())
    assert two.kv_capacity_tokens > 2 * one.kv_capacity_tokens  # the weights are paid for once
    assert two.bandwidth_bytes_s == pytest.approx(2 * 0.9 * one.bandwidth_bytes_s)


def test_tgi_infers_the_pool_and_requests_reserve_their_whole_budget() -> None:
    params = derive_tgi(flags("tgi"), {}, Hardware(), SimulatedModel())
    free = 40 * GIB * 0.98 - 16.06e9 - (GIB + 4096 * 0.5 * 2**20)
    assert params.kv_capacity_tokens == int(free // LLAMA_8B_KV_BYTES)
    assert (params.admission, params.max_in_system, params.max_model_len, params.max_input_tokens) == (
        "reserve_full", 128, 8192, 8191,
    )  # fmt: skip
    assert params.prefix_caching is True
    assert derive_tgi(flags("tgi"), {"PREFIX_CACHING": "0"}, Hardware(), SimulatedModel()).prefix_caching is False
    explicit = derive_tgi(flags("tgi", max_batch_total_tokens=100_000), {}, Hardware(), SimulatedModel())
    assert explicit.kv_capacity_tokens == 100_000


def test_sglang_default_memory_fraction_follows_its_reservation_formula() -> None:
    chunk, graph_bs, fraction = sglang_defaults(flags("sglang"), Hardware())
    reserved_mb = 512 + max(4096, 2048) * 1.5 + 32 * 2 + 1 / 8 * 1024
    assert (chunk, graph_bs) == (4096, 32)
    assert fraction == pytest.approx((40 * 1024 - reserved_mb) / (40 * 1024))
    params = derive_sglang(flags("sglang"), Hardware(), SimulatedModel())
    assert params.kv_capacity_tokens == int((40 * GIB * fraction - 16.06e9) // LLAMA_8B_KV_BYTES)
    assert params.max_running == min(params.kv_capacity_tokens // 2, 4096)
    assert params.reserve_ratio == pytest.approx(0.7)
    big = sglang_defaults(flags("sglang"), Hardware(gpu_memory_gib=80))
    assert big[:2] == (8192, 256)
    assert big[2] == pytest.approx((80 * 1024 - (512 + 8192 * 1.5 + 256 * 2 + 128)) / (80 * 1024))
    floored = sglang_defaults(
        flags("sglang", chunked_prefill_size=2048, cuda_graph_max_bs=8), Hardware(gpu_memory_gib=80)
    )
    assert floored[2] == pytest.approx((80 * 1024 - 10 * 1024) / (80 * 1024))  # at least 10 GiB above 60 GiB


@pytest.mark.parametrize(
    ("engine", "overrides", "message"),
    [
        ("vllm", {"max_model_len": 16384}, "greater than the model's"),
        ("vllm", {"max_num_seqs": 0}, "must be positive"),
        ("vllm", {"enable_chunked_prefill": False}, "is smaller than max_model_len"),
        ("vllm", {"num_gpu_blocks_override": 100}, "larger than the maximum number of tokens"),
        ("vllm", {"tensor_parallel_size": 0}, "parallel size must be >= 1"),
        ("tgi", {"cuda_memory_fraction": 0.0}, "--cuda-memory-fraction"),
        ("tgi", {"max_total_tokens": 16384}, "max_position_embeddings"),
        ("tgi", {"cuda_memory_fraction": 0.3}, "Not enough memory to handle 4096 prefill tokens"),
        ("tgi", {"max_batch_total_tokens": 4096}, "must be <= `max_batch_total_tokens`"),
        ("sglang", {"mem_fraction_static": 1.0}, "within (0, 1)"),
        ("sglang", {"max_total_tokens": 4096}, "is smaller than context_length"),
    ],
)
def test_impossible_flags_stop_the_engine_with_its_message(
    engine: str, overrides: dict[str, int | float | str | bool | None], message: str
) -> None:
    derive: Callable[[Flags], EngineParams] = {
        "vllm": lambda f: derive_vllm(f, Hardware(), SimulatedModel()),
        "tgi": lambda f: derive_tgi(f, {}, Hardware(), SimulatedModel()),
        "sglang": lambda f: derive_sglang(f, Hardware(), SimulatedModel()),
    }[engine]
    with pytest.raises(StartError, match=message.replace("(", r"\(").replace(")", r"\)")):
        derive(flags(engine, **overrides))
