"""Current-config resolution: page over declared over engine default, and honest unknowns."""

from __future__ import annotations

import pytest

from performance_agent.engines.knobs import knob
from performance_agent.optimization.config import coerce, normalize_arg_name, resolve_current_config
from performance_agent.optimization.schemas import GpuSpec, ModelSpec

V0_PAGE = {  # the labels of vllm:cache_config_info in the V0 fixture
    "block_size": "16",
    "cache_dtype": "auto",
    "enable_prefix_caching": "False",
    "gpu_memory_utilization": "0.9",
    "num_gpu_blocks": "81767",
    "num_gpu_blocks_override": "None",
}


def test_vllm_page_values_are_typed_and_sourced() -> None:
    config = resolve_current_config("vllm", V0_PAGE, engine_version="0.6.3")

    settings = config.settings
    assert (settings["block_size"].value, settings["block_size"].source) == (16, "page")
    assert settings["memory_fraction"].value == 0.9
    assert settings["prefix_caching"].value is False
    assert settings["kv_cache_dtype"].value == "auto"
    assert settings["kv_pool_blocks"].value == 81767
    assert settings["chunked_prefill"].source == "unknown"  # V0 decides by model length
    assert "chunked_prefill" in config.unknown
    assert "kv_pool_tokens" not in config.unknown  # derived figures are not settings
    assert {"gpu.memory_gib", "gpu.name", "model.params_b", "model.kv_shape"} <= set(config.unknown)


def test_page_wins_over_a_disagreeing_declaration() -> None:
    config = resolve_current_config("vllm", V0_PAGE, {"--gpu-memory-utilization": 0.8})

    entry = config.settings["memory_fraction"]
    assert (entry.value, entry.source) == (0.9, "page")
    assert entry.note == "declared 0.8 but the page shows 0.9"


@pytest.mark.parametrize("spelling", ["--max-num-seqs", "max-num-seqs", "MAX_NUM_SEQS", "max_num_seqs"])
def test_declared_spellings_are_one_setting(spelling: str) -> None:
    config = resolve_current_config("vllm", {}, {spelling: "64"})

    assert (config.settings["max_running_requests"].value, config.settings["max_running_requests"].source) == (
        64,
        "declared",
    )


@pytest.mark.parametrize(
    ("engine", "declared", "expected"),
    [
        ("vllm", {"--no-enable-prefix-caching": True}, False),
        ("vllm", {"--enable-prefix-caching": "true"}, True),
        ("sglang", {"--disable-radix-cache": True}, False),
        ("sglang", {"--disable-radix-cache": "false"}, True),
        ("tgi", {"PREFIX_CACHING": "0"}, False),
        ("tgi", {"PREFIX_CACHING": "1"}, True),
    ],
)
def test_boolean_declarations_resolve_to_the_concept(engine: str, declared: dict[str, object], expected: bool) -> None:
    config = resolve_current_config(engine, {}, declared)  # type: ignore[arg-type]

    assert config.settings["prefix_caching"].value is expected
    assert config.settings["prefix_caching"].source == "declared"


def test_engine_defaults_fill_in_with_their_note() -> None:
    config = resolve_current_config(
        "tgi", {"max_batch_total_tokens": 120000.0}, gpu=GpuSpec(name="H100", memory_gib=80)
    )

    assert config.settings["kv_pool_tokens"].value == 120000
    assert config.settings["max_concurrent_requests"].source == "engine default"
    assert config.settings["max_concurrent_requests"].value == 128
    assert config.settings["prefix_caching"].value is True
    assert "gpu.memory_gib" not in config.unknown


def test_sglang_inverted_flag_is_explained() -> None:
    config = resolve_current_config("sglang", {"max_total_num_tokens": 500000, "page_size": "1"})

    assert config.settings["prefix_caching"].note == (
        "radix (prefix) cache on; the only spelling is the disabling flag; "
        "value is the setting itself; --disable-radix-cache = true turns it off"
    )
    assert config.settings["kv_pool_tokens"].value == 500000
    assert config.settings["memory_fraction"].source == "unknown"


def test_model_declaration_removes_its_unknowns() -> None:
    model = ModelSpec(params_b=8, num_layers=32, num_kv_heads=8, head_dim=128, dtype="bfloat16")

    config = resolve_current_config("sglang", {}, model=model)

    assert "model.params_b" not in config.unknown
    assert "model.kv_shape" not in config.unknown


@pytest.mark.parametrize(
    ("concept", "raw", "value"),
    [
        ("block_size", "16", 16),
        ("block_size", 16.0, 16),
        ("block_size", "sixteen", None),
        ("memory_fraction", "0.92", 0.92),
        ("prefix_caching", "False", False),
        ("prefix_caching", "maybe", None),
        ("prefix_caching", 1, True),
        ("kv_cache_dtype", " fp8 ", "fp8"),
        ("kv_cache_dtype", "None", None),
        ("kv_cache_dtype", None, None),
    ],
)
def test_coerce(concept: str, raw: str | float | None, value: object) -> None:
    entry = knob("vllm", concept)
    assert entry is not None
    assert coerce(entry, raw) == value


def test_normalize_arg_name() -> None:
    assert normalize_arg_name("--Max-Num-Seqs") == "max_num_seqs"


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="known: sglang, tgi, vllm"):
        resolve_current_config("llamacpp", {})
