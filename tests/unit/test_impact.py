"""Impact arithmetic against hand-computed values."""

from __future__ import annotations

import pytest

from performance_agent.optimization.impact import (
    GIB,
    INT4_EFFECTIVE_BITS,
    batch_change,
    dtype_bytes,
    fit_step_time,
    kv_bytes_per_token,
    kv_capacity_change,
    kv_room_from_memory_fraction,
    kv_room_from_quantization,
    littles_law_concurrency,
    weight_bytes,
)


def test_kv_bytes_per_token_llama_3_1_8b() -> None:
    # 32 layers, 8 KV heads, head dim 128: 2 x 32 x 8 x 128 x 2 bytes = 128 KiB per token in bf16
    assert kv_bytes_per_token(32, 8, 128, 2.0) == 131072
    assert kv_bytes_per_token(32, 8, 128, dtype_bytes("fp8") or 0) == 65536


@pytest.mark.parametrize(
    ("name", "model_dtype", "size"),
    [
        ("auto", "bfloat16", 2.0),
        ("auto", None, None),
        ("auto", "auto", None),
        ("fp8_e4m3fn", None, 1.0),
        ("FP8_E5M2", None, 1.0),
        ("float32", None, 4.0),
        ("fp4_e2m1", None, 0.5),
        ("nosuch", None, None),
        (None, "bfloat16", None),
    ],
)
def test_dtype_bytes(name: str | None, model_dtype: str | None, size: float | None) -> None:
    assert dtype_bytes(name, model_dtype) == size


def test_fp8_doubles_kv_capacity_from_16_bit() -> None:
    estimate = kv_capacity_change(2.0, 1.0)
    assert (estimate.low, estimate.high) == (1.0, 1.0)
    assert kv_capacity_change(1.0, 1.0).high == 0.0


def test_unknown_model_dtype_widens_the_kv_range() -> None:
    estimate = kv_capacity_change(None, 1.0)
    assert (estimate.low, estimate.high) == (1.0, 3.0)
    assert "not declared" in estimate.assumptions[0]


def test_weight_bytes() -> None:
    assert weight_bytes(8.0, 16) == 16e9
    assert weight_bytes(70.0, INT4_EFFECTIVE_BITS) == 70e9 * 4.25 / 8


def test_quantization_frees_kv_room_with_declared_sizes() -> None:
    # 8B model in bf16 = 16e9 B; FP8 frees half. One 80 GiB GPU at fraction 0.9 -> 72 GiB usable.
    estimate = kv_room_from_quantization(current_bits=16, new_bits=8, params_b=8.0, usable_gib=72.0)
    weights = 16e9
    freed = 8e9
    biggest_pool = 72 * GIB * 0.98 - weights
    smallest_pool = 72 * GIB * 0.90 - weights
    assert estimate.low == pytest.approx(freed / biggest_pool)
    assert estimate.high == pytest.approx(freed / smallest_pool)
    assert any("14.9 GiB" in a for a in estimate.assumptions)


def test_quantization_room_is_exact_when_the_page_gives_the_pool() -> None:
    estimate = kv_room_from_quantization(
        current_bits=16, new_bits=8, params_b=8.0, usable_gib=None, kv_pool_bytes=40 * GIB
    )
    assert estimate.low == pytest.approx(8e9 / (40 * GIB))
    assert estimate.high == pytest.approx(estimate.low)


def test_quantization_room_without_sizes_is_wide_and_says_why() -> None:
    estimate = kv_room_from_quantization(current_bits=16, new_bits=8, params_b=None, usable_gib=None)
    # weights take 10%..80% of usable memory, 10% overhead: 0.1 x 0.5 / 0.8 .. 0.8 x 0.5 / 0.1
    assert estimate.low == pytest.approx(0.0625)
    assert estimate.high == pytest.approx(4.0)
    assert "model size (params_b) and GPU memory not declared" in estimate.assumptions[0]


def test_model_that_does_not_fit_gives_no_estimate() -> None:
    estimate = kv_room_from_quantization(current_bits=16, new_bits=8, params_b=70.0, usable_gib=40.0)
    assert (estimate.low, estimate.high) == (0.0, 0.0)
    assert "does not hold" in estimate.assumptions[-1]


def test_memory_fraction_moves_kv_room() -> None:
    estimate = kv_room_from_memory_fraction(
        current_fraction=0.9, new_fraction=0.95, gpu_memory_gib=80.0, gpu_count=1, params_b=8.0, weight_bits=16
    )
    moved = 0.05 * 80 * GIB
    assert estimate.low == pytest.approx(moved / (72 * GIB * 0.98 - 16e9))
    assert estimate.high == pytest.approx(moved / (72 * GIB * 0.90 - 16e9))


def test_lowering_memory_fraction_shrinks_kv() -> None:
    estimate = kv_room_from_memory_fraction(
        current_fraction=0.9, new_fraction=0.8, gpu_memory_gib=80.0, gpu_count=2, params_b=8.0, weight_bits=16
    )
    moved = -0.1 * 160 * GIB
    assert estimate.low == pytest.approx(moved / (144 * GIB * 0.90 - 16e9))
    assert estimate.high == pytest.approx(moved / (144 * GIB * 0.98 - 16e9))
    assert estimate.high < 0


def test_memory_fraction_without_sizes() -> None:
    estimate = kv_room_from_memory_fraction(
        current_fraction=0.9, new_fraction=0.95, gpu_memory_gib=None, gpu_count=1, params_b=None, weight_bits=16
    )
    assert estimate.low == pytest.approx(0.05 / 0.81)
    assert estimate.high == pytest.approx(0.05 / 0.18)


def test_littles_law() -> None:
    assert littles_law_concurrency(5.0, 3.2) == pytest.approx(16.0)


def test_two_regime_bounds_of_a_batch_change() -> None:
    bigger = batch_change(16, 24)
    smaller = batch_change(16, 8)
    assert (bigger["itl"].low, bigger["itl"].high) == (0.0, 0.5)
    assert (bigger["throughput"].low, bigger["throughput"].high) == (0.0, 0.5)
    assert (smaller["itl"].low, smaller["itl"].high) == (-0.5, 0.0)
    assert (smaller["throughput"].low, smaller["throughput"].high) == (-0.5, 0.0)


LINEAR = [(8, 0.014), (16, 0.018), (32, 0.026), (64, 0.042)]  # 10 ms + 0.5 ms per running request


def test_step_time_fit_recovers_a_linear_relation() -> None:
    fit = fit_step_time(LINEAR)
    assert fit is not None
    assert fit.base_s == pytest.approx(0.010)
    assert fit.per_request_s == pytest.approx(0.0005)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.points == 4


def test_fitted_batch_change() -> None:
    fit = fit_step_time(LINEAR)
    effects = batch_change(16, 32, fit)
    itl = 0.026 / 0.018 - 1
    throughput = (32 / 0.026) / (16 / 0.018) - 1
    assert effects["itl"].low == pytest.approx(itl * 0.8)
    assert effects["itl"].high == pytest.approx(itl * 1.2)
    assert effects["throughput"].low == pytest.approx(throughput * 0.8)
    assert "fitted" in effects["throughput"].assumptions[0]


@pytest.mark.parametrize(
    "observations",
    [
        [(8, 0.014), (16, 0.018)],  # too few points
        [(16, 0.018), (16.5, 0.019), (17, 0.018)],  # the batch barely moved
        [(8, 0.04), (16, 0.03), (32, 0.02)],  # slower with smaller batches: not a step-time relation
        [(8, 0.0), (0, 0.01), (16, -1.0)],  # unusable points are dropped
    ],
)
def test_step_time_fit_refuses_to_guess(observations: list[tuple[float, float]]) -> None:
    assert fit_step_time(observations) is None
