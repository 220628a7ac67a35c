"""Impact models: KV capacity arithmetic, weight memory under quantization, batching by Little's law.

Every function returns a range of relative change (fractions) plus the assumptions behind it.
An unknown input widens the range and is named in the assumptions; it is never filled in.
Decode regimes bound batching effects: memory-bound steps take the same time whatever the
batch (throughput scales with batch, latency does not), compute-bound steps grow with the
batch (latency scales, throughput does not). Reality lies between the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = (
    "DTYPE_BYTES",
    "GIB",
    "INT4_EFFECTIVE_BITS",
    "UNKNOWN_WEIGHT_SHARE",
    "Estimate",
    "StepTimeFit",
    "batch_change",
    "dtype_bytes",
    "fit_step_time",
    "kv_bytes_per_token",
    "kv_capacity_change",
    "kv_room_from_memory_fraction",
    "kv_room_from_quantization",
    "littles_law_concurrency",
    "weight_bytes",
)

GIB = 1024**3
# bytes per element of a KV cache or weight dtype, by the spellings the engines use
DTYPE_BYTES: dict[str, float] = {
    "float32": 4.0,
    "float": 4.0,
    "fp32": 4.0,
    "float16": 2.0,
    "half": 2.0,
    "fp16": 2.0,
    "bfloat16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "fp8_e4m3fn": 1.0,
    "fp8_inc": 1.0,
    "int8": 1.0,
    "fp4_e2m1": 0.5,
    "nvfp4": 0.5,
}
# 4-bit weights plus one 16-bit scale and zero point per group of 128 (AWQ/GPTQ default group size)
INT4_EFFECTIVE_BITS = 4.0 + 32.0 / 128.0
# when model size or GPU memory is unknown, weights may take anywhere in this share of usable memory
UNKNOWN_WEIGHT_SHARE = (0.1, 0.8)
# activations, CUDA graphs and allocator slack, as a share of the memory the engine may use
RUNTIME_OVERHEAD_SHARE = (0.02, 0.10)


@dataclass(slots=True)
class Estimate:
    low: float
    high: float
    assumptions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.low > self.high:
            self.low, self.high = self.high, self.low


def dtype_bytes(name: str | None, model_dtype: str | None = None) -> float | None:
    """Bytes per element; `auto` means the model's dtype, None when that is unknown."""
    if name is None:
        return None
    key = name.lower()
    if key == "auto":
        return dtype_bytes(model_dtype) if model_dtype and model_dtype.lower() != "auto" else None
    return DTYPE_BYTES.get(key)


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, bytes_per_element: float) -> float:
    """K and V for every layer and KV head: 2 x layers x kv_heads x head_dim x bytes."""
    return 2.0 * num_layers * num_kv_heads * head_dim * bytes_per_element


def kv_capacity_change(current_bytes: float | None, new_bytes: float) -> Estimate:
    """Token capacity of the same KV pool when each element shrinks from current to new bytes."""
    if current_bytes is not None:
        change = current_bytes / new_bytes - 1.0
        return Estimate(change, change, [f"KV pool bytes unchanged; {current_bytes:g} -> {new_bytes:g} bytes/element"])
    low = 2.0 / new_bytes - 1.0
    high = 4.0 / new_bytes - 1.0
    return Estimate(
        low,
        high,
        [
            "current KV dtype resolves to the model dtype, which is not declared: "
            "range spans a 16-bit (usual) to a 32-bit model"
        ],
    )


def weight_bytes(params_b: float, bits: float) -> float:
    return params_b * 1e9 * bits / 8.0


def _kv_pool_range(usable_bytes: float, weights: float, kv_pool_bytes: float | None) -> tuple[float, float, list[str]]:
    if kv_pool_bytes is not None:
        return kv_pool_bytes, kv_pool_bytes, ["KV pool size read from the page (tokens x bytes per token)"]
    low_pool = usable_bytes * (1 - RUNTIME_OVERHEAD_SHARE[1]) - weights
    high_pool = usable_bytes * (1 - RUNTIME_OVERHEAD_SHARE[0]) - weights
    return (
        low_pool,
        high_pool,
        [
            f"KV pool = usable memory - weights - runtime overhead of {RUNTIME_OVERHEAD_SHARE[0]:.0%}-"
            f"{RUNTIME_OVERHEAD_SHARE[1]:.0%} (activations, CUDA graphs)"
        ],
    )


def kv_room_from_quantization(
    *,
    current_bits: float,
    new_bits: float,
    params_b: float | None,
    usable_gib: float | None,
    kv_pool_bytes: float | None = None,
) -> Estimate:
    """Relative growth of the KV pool when weights shrink and the freed memory goes to KV.

    `usable_gib` is the memory the engine may use on all GPUs of the instance (memory x fraction x count).
    """
    shrink = 1.0 - new_bits / current_bits
    if params_b is not None and (usable_gib is not None or kv_pool_bytes is not None):
        weights = weight_bytes(params_b, current_bits)
        freed = weights * shrink
        usable = (usable_gib or 0.0) * GIB
        low_pool, high_pool, notes = _kv_pool_range(usable, weights, kv_pool_bytes)
        if high_pool <= 0:
            return Estimate(0.0, 0.0, [*notes, "declared memory does not hold the declared model: no estimate"])
        low_pool = max(low_pool, high_pool * 0.25)
        notes.append(f"weights {weights / GIB:.1f} GiB at {current_bits:g} bits shrink by {freed / GIB:.1f} GiB")
        return Estimate(freed / high_pool, freed / low_pool, notes)
    share_low, share_high = UNKNOWN_WEIGHT_SHARE
    overhead = RUNTIME_OVERHEAD_SHARE[1]
    low = share_low * shrink / (1 - share_low - overhead)
    high = share_high * shrink / max(1 - share_high - overhead, 0.05)
    missing = [n for n, v in (("model size (params_b)", params_b), ("GPU memory", usable_gib)) if v is None]
    return Estimate(
        low,
        high,
        [
            f"{' and '.join(missing)} not declared: weights assumed to take {share_low:.0%}-{share_high:.0%} "
            "of usable memory, which is why the range is wide"
        ],
    )


def kv_room_from_memory_fraction(
    *,
    current_fraction: float,
    new_fraction: float,
    gpu_memory_gib: float | None,
    gpu_count: int,
    params_b: float | None,
    weight_bits: float,
    kv_pool_bytes: float | None = None,
) -> Estimate:
    """Relative change of the KV pool when the engine's memory fraction moves; weights stay put."""
    delta = new_fraction - current_fraction
    if gpu_memory_gib is not None and (params_b is not None or kv_pool_bytes is not None):
        total = gpu_memory_gib * GIB * gpu_count
        weights = weight_bytes(params_b, weight_bits) if params_b is not None else 0.0
        low_pool, high_pool, notes = _kv_pool_range(total * current_fraction, weights, kv_pool_bytes)
        if high_pool <= 0:
            return Estimate(0.0, 0.0, [*notes, "declared memory does not hold the declared model: no estimate"])
        low_pool = max(low_pool, high_pool * 0.25)
        notes.append(f"{abs(delta):.2f} of {gpu_memory_gib * gpu_count:g} GiB moves {'to' if delta > 0 else 'from'} KV")
        return Estimate(delta * total / high_pool, delta * total / low_pool, notes)
    share_low, share_high = UNKNOWN_WEIGHT_SHARE
    pool_high = current_fraction - share_low * current_fraction
    pool_low = max(current_fraction - share_high * current_fraction, 0.05)
    return Estimate(
        delta / pool_high,
        delta / pool_low,
        [
            "GPU memory or model size not declared: weights and overhead assumed to take "
            f"{share_low:.0%}-{share_high:.0%} of the engine's memory, which is why the range is wide"
        ],
    )


def littles_law_concurrency(arrival_rate_per_s: float, mean_latency_s: float) -> float:
    """L = lambda x W: requests in the system on average."""
    return arrival_rate_per_s * mean_latency_s


@dataclass(slots=True)
class StepTimeFit:
    """Decode step time t(B) = base_s + per_request_s x B, fitted over windows with different batch sizes."""

    base_s: float
    per_request_s: float
    points: int
    r_squared: float

    def step_time(self, batch: float) -> float:
        return self.base_s + self.per_request_s * batch


def fit_step_time(observations: Sequence[tuple[float, float]], min_points: int = 3) -> StepTimeFit | None:
    """Least squares over (requests_running, mean ITL) pairs; None when the batch barely varied.

    Needs the batch to vary by at least 20% of its mean and a non-negative slope: otherwise
    one regime cannot be told from the other and the caller keeps the two-regime bounds.
    """
    points = [(b, t) for b, t in observations if b > 0 and t > 0]
    if len(points) < min_points:
        return None
    mean_b = sum(b for b, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    spread = sum((b - mean_b) ** 2 for b, _ in points)
    if math.sqrt(spread / len(points)) < 0.2 * mean_b:
        return None
    slope = sum((b - mean_b) * (t - mean_t) for b, t in points) / spread
    base = mean_t - slope * mean_b
    if slope < 0 or base < 0:
        return None
    total = sum((t - mean_t) ** 2 for _, t in points)
    residual = sum((t - (base + slope * b)) ** 2 for b, t in points)
    return StepTimeFit(base, slope, len(points), 1.0 - residual / total if total > 0 else 1.0)


def batch_change(current_batch: float, new_batch: float, fit: StepTimeFit | None = None) -> dict[str, Estimate]:
    """Effect of moving the mean decode batch from `current_batch` to `new_batch` on ITL and throughput."""
    ratio = new_batch / current_batch
    if fit is not None:
        itl = fit.step_time(new_batch) / fit.step_time(current_batch) - 1.0
        throughput = (new_batch / fit.step_time(new_batch)) / (current_batch / fit.step_time(current_batch)) - 1.0
        note = (
            f"decode step time fitted as {fit.base_s * 1000:.2f} ms + {fit.per_request_s * 1000:.3f} ms x batch "
            f"over {fit.points} windows (R^2 {fit.r_squared:.2f}); +-20% around the fit"
        )
        return {
            "itl": Estimate(itl * 0.8, itl * 1.2, [note]),
            "throughput": Estimate(throughput * 0.8, throughput * 1.2, [note]),
        }
    note = (
        f"batch {current_batch:.3g} -> {new_batch:.3g}: between a memory-bound decode (step time constant, "
        "throughput follows the batch) and a compute-bound one (step time follows the batch, throughput constant)"
    )
    return {
        "itl": Estimate(0.0, ratio - 1.0, [note]),
        "throughput": Estimate(0.0, ratio - 1.0, [note]),
    }
