"""Engine flag spellings and defaults, written out by hand from the engines' own docs (docs/sources.md)."""

from __future__ import annotations

import pytest

from performance_agent.engines.knobs import ENGINES, KNOBS, knob, signal_gap
from performance_agent.engines.knobs_defaults import engine_default, parse_version, sglang_mem_fraction_static
from performance_agent.engines.knobs_quantization import QUANTIZATION_METHODS

# (engine, concept) -> spelling, as vLLM `vllm/config/{cache,scheduler}.py`, TGI `launcher.md` and SGLang
# `server_arguments.md` write them
EXPECTED_SPELLINGS = {
    ("vllm", "max_running_requests"): "--max-num-seqs",
    ("vllm", "batch_token_budget"): "--max-num-batched-tokens",
    ("vllm", "chunked_prefill"): "--enable-chunked-prefill",
    ("vllm", "memory_fraction"): "--gpu-memory-utilization",
    ("vllm", "block_size"): "--block-size",
    ("vllm", "kv_cache_dtype"): "--kv-cache-dtype",
    ("vllm", "prefix_caching"): "--enable-prefix-caching",
    ("vllm", "quantization"): "--quantization",
    ("tgi", "kv_pool_tokens"): "--max-batch-total-tokens",
    ("tgi", "memory_fraction"): "--cuda-memory-fraction",
    ("tgi", "kv_cache_dtype"): "--kv-cache-dtype",
    ("tgi", "prefix_caching"): "PREFIX_CACHING",
    ("tgi", "batch_token_budget"): "--max-batch-prefill-tokens",
    ("tgi", "max_concurrent_requests"): "--max-concurrent-requests",
    ("tgi", "waiting_served_ratio"): "--waiting-served-ratio",
    ("tgi", "max_waiting_tokens"): "--max-waiting-tokens",
    ("tgi", "quantization"): "--quantize",
    ("sglang", "memory_fraction"): "--mem-fraction-static",
    ("sglang", "kv_pool_tokens"): "--max-total-tokens",
    ("sglang", "block_size"): "--page-size",
    ("sglang", "kv_cache_dtype"): "--kv-cache-dtype",
    ("sglang", "prefix_caching"): "--disable-radix-cache",
    ("sglang", "max_running_requests"): "--max-running-requests",
    ("sglang", "batch_token_budget"): "--chunked-prefill-size",
    ("sglang", "max_prefill_tokens"): "--max-prefill-tokens",
    ("sglang", "schedule_conservativeness"): "--schedule-conservativeness",
    ("sglang", "quantization"): "--quantization",
}


@pytest.mark.parametrize(("key", "spelling"), sorted(EXPECTED_SPELLINGS.items()))
def test_spellings(key: tuple[str, str], spelling: str) -> None:
    entry = knob(*key)
    assert entry is not None
    assert entry.spelling == spelling


def test_every_knob_with_a_spelling_is_listed() -> None:
    spelled = {(engine, concept) for engine in ENGINES for concept, k in KNOBS[engine].items() if k.flag or k.env}
    assert spelled == set(EXPECTED_SPELLINGS)


def test_boolean_styles() -> None:
    vllm_prefix = knob("vllm", "prefix_caching")
    sglang_radix = knob("sglang", "prefix_caching")
    tgi_prefix = knob("tgi", "prefix_caching")
    assert vllm_prefix is not None
    assert vllm_prefix.negative_flag == "--no-enable-prefix-caching"
    assert sglang_radix is not None
    assert sglang_radix.inverted
    assert tgi_prefix is not None
    assert tgi_prefix.flag is None
    assert (tgi_prefix.env, tgi_prefix.env_true, tgi_prefix.env_false) == ("PREFIX_CACHING", "1", "0")


def test_engines_without_a_setting_say_so() -> None:
    assert knob("tgi", "max_running_requests") is None
    assert knob("tgi", "block_size") is None
    assert knob("vllm", "max_concurrent_requests") is None
    assert knob("nosuchengine", "block_size") is None


# Every `--quantization` / `--quantize` value each engine accepts: vLLM's 2026
# `model_executor/layers/quantization/__init__.py`, TGI's `docs/source/reference/launcher.md` @db931fcf and
# SGLang's `docs/advanced_features/server_arguments.md` @004813e1 (docs/sources.md, "Engine flags").
UPSTREAM_QUANTIZATION_VALUES = {
    "vllm": frozenset(
        {"awq", "fp8", "fbgemm_fp8", "fp_quant", "modelopt", "modelopt_fp4", "modelopt_mxfp8", "modelopt_mixed"}
        | {"gguf", "gptq_marlin", "awq_marlin", "gptq", "compressed-tensors", "bitsandbytes", "experts_int8"}
        | {"quark", "moe_wna16", "torchao", "inc", "mxfp4", "gpt_oss_mxfp4", "cpu_awq", "online"}
    ),
    "tgi": frozenset(
        {"awq", "compressed-tensors", "eetq", "exl2", "gptq", "marlin", "bitsandbytes", "bitsandbytes-nf4"}
        | {"bitsandbytes-fp4", "fp8"}
    ),
    "sglang": frozenset(
        {"awq", "fp8", "gptq", "marlin", "gptq_marlin", "awq_marlin", "bitsandbytes", "gguf", "modelopt"}
        | {"modelopt_fp8", "modelopt_fp4", "petit_nvfp4", "w8a8_int8", "w8a8_fp8", "moe_wna16", "qoq", "w4afp8"}
        | {"mxfp4", "mxfp8", "auto-round", "compressed-tensors", "modelslim", "quark_int4fp8_moe"}
    ),
}


@pytest.mark.parametrize("engine", ENGINES)
def test_quantization_values_are_ones_the_engine_accepts(engine: str) -> None:
    offered = {option.flag_value for option in QUANTIZATION_METHODS[engine].values()}
    assert offered <= UPSTREAM_QUANTIZATION_VALUES[engine], offered - UPSTREAM_QUANTIZATION_VALUES[engine]


def test_needs_checkpoint_per_method() -> None:
    needs = {(e, m): o.needs_checkpoint for e, methods in QUANTIZATION_METHODS.items() for m, o in methods.items()}
    assert needs == {
        ("vllm", "fp8"): False,
        ("vllm", "int8"): True,
        ("vllm", "int4_awq"): True,
        ("vllm", "int4_gptq"): True,
        ("tgi", "fp8"): False,
        ("tgi", "int8"): False,
        ("tgi", "int4_awq"): True,
        ("tgi", "int4_gptq"): True,
        ("sglang", "fp8"): False,
        ("sglang", "int8"): True,
        ("sglang", "int4_awq"): True,
        ("sglang", "int4_gptq"): True,
    }


def test_signal_gaps() -> None:
    assert signal_gap("tgi", "kv_cache_usage") is not None
    assert signal_gap("tgi", "preemptions_per_s") is not None
    assert signal_gap("vllm", "kv_cache_usage") is None
    assert signal_gap("sglang", "preemptions_per_s") is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0.8.5", (0, 8, 5)), ("v0.11.0rc1", (0, 11, 0)), ("0.6.3.post1", (0, 6, 3)), ("3.3.7", (3, 3, 7)), ("", None)],
)
def test_parse_version(text: str, parsed: tuple[int, ...] | None) -> None:
    assert parse_version(text) == parsed
    assert parse_version(None) is None
    assert parse_version("dev") is None


@pytest.mark.parametrize(
    ("engine", "concept", "version", "gpu", "memory", "expected"),
    [
        ("vllm", "max_running_requests", None, "A100", 80.0, 256),
        ("vllm", "max_running_requests", None, "L4", 24.0, 256),
        ("vllm", "max_running_requests", None, "H100", 80.0, None),  # 1024 or 256 by release
        ("vllm", "batch_token_budget", None, "H100", 80.0, 8192),
        ("vllm", "batch_token_budget", None, "A100", 80.0, 2048),
        ("vllm", "batch_token_budget", None, None, None, None),
        ("vllm", "prefix_caching", "0.8.0", None, None, True),
        ("vllm", "prefix_caching", "0.7.3", None, None, False),
        ("vllm", "prefix_caching", None, None, None, None),
        ("vllm", "chunked_prefill", "0.10.1", None, None, True),
        ("vllm", "chunked_prefill", "0.6.0", None, None, None),
        ("vllm", "memory_fraction", "0.12.0", None, None, 0.9),
        ("vllm", "memory_fraction", "0.14.0", None, None, None),
        ("vllm", "block_size", None, None, None, 16),
        ("tgi", "memory_fraction", None, None, None, 1.0),
        ("tgi", "max_concurrent_requests", None, None, None, 128),
        ("tgi", "kv_pool_tokens", None, "H100", 80.0, None),
        ("sglang", "batch_token_budget", None, None, 24.0, 2048),
        ("sglang", "batch_token_budget", None, None, 48.0, 4096),
        ("sglang", "batch_token_budget", None, None, 80.0, 8192),
        ("sglang", "batch_token_budget", None, None, 192.0, 16384),
        ("sglang", "memory_fraction", None, None, None, None),
        ("sglang", "block_size", None, None, None, 1),
        ("sglang", "no_such_concept", None, None, None, None),
    ],
)
def test_engine_defaults(
    engine: str, concept: str, version: str | None, gpu: str | None, memory: float | None, expected: object
) -> None:
    assert engine_default(engine, concept, version, gpu, memory) == expected


def test_sglang_static_memory_fraction_by_hand() -> None:
    # 80 GiB, tp 1: 512 + 8192 x 1.5 + 256 x 2 + 1/8 x 1024 = 13440 MB (above the 10 GiB floor)
    assert sglang_mem_fraction_static(80.0) == round((81920 - 13440) / 81920, 3)
    # 24 GiB, tp 1: 512 + 2048 x 1.5 + 24 x 2 + 128 = 3760 MB
    assert sglang_mem_fraction_static(24.0) == round((24576 - 3760) / 24576, 3)
    # 24 GiB, tp 4: cuda graph bs 80, 4/8 x 1024 = 512 -> 512 + 3072 + 160 + 512 = 4256 MB
    assert sglang_mem_fraction_static(24.0, 4) == round((24576 - 4256) / 24576, 3)
    assert engine_default("sglang", "memory_fraction", None, None, 80.0) == 0.836
