"""The judge's inputs from the workflow: guardrail tolerances, judge settings, and fixed constants.

Constants here are the calibrated design (see `docs/rollout.md`, "How the judge decides", and
`make eval-judge`): changing one changes the error guarantee or the power, so they are not
request fields.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = (
    "AA_ALPHA_SHARE",
    "ABSOLUTE_LIMIT_SHARE",
    "ALTERNATIVES",
    "BASELINE_ALPHA_SHARE",
    "LATENCY_GUARDRAILS",
    "MAX_EDGE_SHARE",
    "MIN_EDGE_COUNT",
    "MIN_EDGE_SHARE",
    "JudgeSettings",
    "MetricKind",
    "Tolerances",
)

AA_ALPHA_SHARE = 0.2
BASELINE_ALPHA_SHARE = 0.1
#: Alternatives of each test, as multiples of the tolerated odds (or rate) ratio; their e-values are averaged.
ALTERNATIVES = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
#: Edges whose baseline share above lies in this range are judged (tail and body of the distribution).
MIN_EDGE_SHARE = 0.001
MAX_EDGE_SHARE = 0.5
#: An edge needs this many baseline requests on each side for its share (and margin) to mean anything.
MIN_EDGE_COUNT = 5.0
#: Share of requests an absolute p99 limit allows above it.
ABSOLUTE_LIMIT_SHARE = 0.01
#: Keys of the latency guardrails: histogram, relative tolerance, absolute limit.
LATENCY_GUARDRAILS = (
    ("ttft_s", "max_ttft_p99_increase", "max_ttft_p99_s"),
    ("itl_s", "max_itl_p99_increase", "max_itl_p99_s"),
    ("e2e_s", "max_e2e_p99_increase", "max_e2e_p99_s"),
    ("queue_s", "max_queue_p99_increase", None),
)

MetricKind = Literal[
    "latency", "goodput", "latency_limit", "error_rate", "error_rate_increase", "throughput", "preemptions"
]


class Tolerances(msgspec.Struct, kw_only=True, frozen=True):
    """The guardrails as the judge reads them (same names and meaning as `workflows.policy.Guardrails`).

    `max_queue_p99_increase` is None (not judged) by default: queueing is already inside TTFT and
    e2e, and at light load queue times sit in the lowest buckets, where a harmless shift of a
    millisecond is a large ratio. `slo_targets_s` maps latency keys to SLO targets for goodput,
    which is judged only when targets are given and `max_goodput_decrease` is not None.
    """

    max_ttft_p99_increase: float | None = 0.2
    max_itl_p99_increase: float | None = 0.15
    max_e2e_p99_increase: float | None = 0.2
    max_queue_p99_increase: float | None = None
    max_error_rate: float | None = 0.02
    max_error_rate_increase: float | None = 0.01
    max_throughput_decrease: float | None = 0.5
    max_preemptions_increase: float | None = 1.0
    max_ttft_p99_s: float | None = None
    max_itl_p99_s: float | None = None
    max_e2e_p99_s: float | None = None
    max_goodput_decrease: float | None = 0.02
    slo_targets_s: dict[str, float] = msgspec.field(default_factory=dict)

    @classmethod
    def from_guardrails(cls, guardrails: object, slo_targets_s: dict[str, float] | None = None) -> Tolerances:
        """Every field of `guardrails` (a `Guardrails` or any object) that the judge knows, by name."""
        names = [name for name in cls.__struct_fields__ if name != "slo_targets_s"]
        values = {name: getattr(guardrails, name) for name in names if hasattr(guardrails, name)}
        if values.get("max_goodput_decrease", 0.0) is None:
            values.pop("max_goodput_decrease")  # an unset guardrail keeps the judge's default
        return cls(**values, slo_targets_s=dict(slo_targets_s or {}))


class JudgeSettings(msgspec.Struct, kw_only=True, frozen=True):
    """`max_stage_extension_s` None means: as long as the stage's own `duration_s`."""

    alpha: float = 0.05
    min_canary_requests: int = 1000
    max_stage_extension_s: float | None = None
