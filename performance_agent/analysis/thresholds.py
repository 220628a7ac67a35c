"""Detector thresholds: every number a finding is compared with, in one configurable place.

Defaults and the reasons behind them are documented in `docs/analysis.md`. Comparisons are
inclusive: a value equal to a threshold crosses it.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any

import msgspec

__all__ = ("Thresholds", "parse_thresholds")

Fraction = Annotated[float, msgspec.Meta(gt=0, le=1)]
Positive = Annotated[float, msgspec.Meta(gt=0)]


class Thresholds(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # kv_cache_pressure: KV usage as a fraction of the pool, preemptions (vLLM) / retractions (SGLang) per second
    kv_usage_low: Fraction = 0.80
    kv_usage_medium: Fraction = 0.90
    kv_usage_high: Fraction = 0.98
    preemptions_per_s_medium: Positive = 0.001
    preemptions_per_s_high: Positive = 0.03
    preemptions_per_s_critical: Positive = 1.0

    # queueing: mean requests waiting, and the share of mean TTFT spent in the queue
    queue_waiting_requests: Positive = 1.0
    queue_share_of_ttft: Fraction = 0.5
    queue_time_s_high: Positive = 1.0
    queue_time_s_critical: Positive = 5.0

    # prefill_latency: TTFT p99 (seconds) when the queue does not explain it
    ttft_p99_s_medium: Positive = 1.0
    ttft_p99_s_high: Positive = 3.0
    ttft_p99_s_critical: Positive = 10.0

    # decode_latency: inter-token latency p99 (seconds)
    itl_p99_s_medium: Positive = 0.1
    itl_p99_s_high: Positive = 0.2
    itl_p99_s_critical: Positive = 0.5

    # latency percentiles of fewer requests than this are too noisy to judge
    min_requests_for_latency: Annotated[int, msgspec.Meta(ge=1)] = 10

    # underutilization: all of these at or below their limit (and nothing waiting)
    idle_max_running_requests: Positive = 2.0
    idle_max_kv_usage: Fraction = 0.20
    idle_max_generation_tokens_per_s: Positive = 100.0
    idle_running_requests_high: Positive = 0.1

    # request_errors: failed / finished requests
    error_rate_medium: Fraction = 0.01
    error_rate_high: Fraction = 0.05
    error_rate_critical: Fraction = 0.20

    def __post_init__(self) -> None:
        ladders: dict[str, tuple[float, ...]] = {
            "kv_usage": (self.kv_usage_low, self.kv_usage_medium, self.kv_usage_high),
            "preemptions_per_s": (
                self.preemptions_per_s_medium,
                self.preemptions_per_s_high,
                self.preemptions_per_s_critical,
            ),
            "queue_time_s": (self.queue_time_s_high, self.queue_time_s_critical),
            "ttft_p99_s": (self.ttft_p99_s_medium, self.ttft_p99_s_high, self.ttft_p99_s_critical),
            "itl_p99_s": (self.itl_p99_s_medium, self.itl_p99_s_high, self.itl_p99_s_critical),
            "idle_running_requests": (self.idle_running_requests_high, self.idle_max_running_requests),
            "error_rate": (self.error_rate_medium, self.error_rate_high, self.error_rate_critical),
        }
        for name, ladder in ladders.items():
            if any(lower > upper for lower, upper in pairwise(ladder)):
                raise ValueError(f"{name} thresholds must not decrease with severity: {ladder}")


def parse_thresholds(overrides: dict[str, Any] | None = None) -> Thresholds:
    """Build thresholds from configuration, rejecting unknown keys and out-of-range values."""
    return msgspec.convert(overrides or {}, Thresholds)
