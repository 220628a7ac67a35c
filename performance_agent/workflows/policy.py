"""The resolved rules one workflow runs with: request values over settings defaults, fixed at creation.

Resolving once (not at every tick) means a changed `PERF_AGENT_WORKFLOW_*` default never alters a
rollout already under way, and the stored workflow shows exactly what it is judged by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from performance_agent.judge import JudgeSettings, resolve_min_canary_requests

if TYPE_CHECKING:
    from performance_agent.workflows.schemas import GuardrailSpec, JudgeSpec, MonitorSpec

__all__ = ("Guardrails", "MonitorPolicy", "resolve_guardrails", "resolve_judge", "resolve_monitor")


class Guardrails(msgspec.Struct, kw_only=True, frozen=True):
    """Thresholds of the health gate. `None` on an optional absolute limit means "not checked".

    `max_*_increase` is the slowdown that is acceptable: the judge rolls back only on evidence that
    the canary is slower than the reference by more than that. `min_samples` no longer gates a
    window; given in a request without `judge.min_canary_requests` it becomes the stage's pooled
    floor (see `resolve_judge`). `consecutive_failures` now counts only windows whose canary could
    not be scraped (with `on_canary_scrape_error: fail`): statistical evidence accumulates instead
    of being counted window by window.
    """

    min_samples: int = 100
    max_ttft_p99_increase: float = 0.2
    max_itl_p99_increase: float = 0.15
    max_e2e_p99_increase: float = 0.2
    max_error_rate: float = 0.02
    max_error_rate_increase: float = 0.01
    max_preemptions_per_s: float | None = None
    max_preemptions_increase: float = 1.0
    max_throughput_decrease: float = 0.5
    max_ttft_p99_s: float | None = None
    max_itl_p99_s: float | None = None
    max_e2e_p99_s: float | None = None
    consecutive_failures: int = 2
    on_canary_scrape_error: Literal["fail", "inconclusive"] = "fail"
    max_goodput_decrease: float = 0.02


class MonitorPolicy(msgspec.Struct, kw_only=True, frozen=True):
    """`duration_s` counts from the start of monitoring, warm-up included.

    A stage passes once `duration_s` is over, at least `min_passing_windows` windows were judged
    and passed, nothing rolled it back and the canary served the judge's pooled floor (see
    `gate.decide_after_window`). `inconclusive_timeout_s` without a window that could be read
    pauses it.
    """

    duration_s: float = 300.0
    interval_s: float = 15.0
    warmup_s: float = 60.0
    min_passing_windows: int = 3
    inconclusive_timeout_s: float = 300.0


def _merged(spec: msgspec.Struct | None, defaults: msgspec.Struct) -> dict[str, object]:
    values = msgspec.structs.asdict(defaults)
    if spec is not None:
        for name, value in msgspec.structs.asdict(spec).items():
            if value is not None:
                values[name] = value
    return values


def resolve_guardrails(spec: GuardrailSpec | None, defaults: Guardrails) -> Guardrails:
    return Guardrails(**_merged(spec, defaults))  # type: ignore[arg-type]


def resolve_judge(spec: JudgeSpec | None, guardrails: GuardrailSpec | None, defaults: JudgeSettings) -> JudgeSettings:
    """Request values over defaults; a body written for the per-window gate keeps its traffic floor.

    Such a body set `guardrails.min_samples` and knows nothing of `judge`: its `min_samples` then
    becomes the pooled `min_canary_requests` of each stage, so it advances with the traffic it
    advanced with before. Resolved once, at creation, like the guardrails.
    """
    values = _merged(spec, defaults)
    values["min_canary_requests"] = resolve_min_canary_requests(
        None if spec is None else spec.min_canary_requests,
        None if guardrails is None else guardrails.min_samples,
        defaults.min_canary_requests,
    )
    return JudgeSettings(**values)  # type: ignore[arg-type]


def resolve_monitor(spec: MonitorSpec | None, defaults: MonitorPolicy) -> MonitorPolicy:
    """An omitted `inconclusive_timeout_s` follows the stage's own `duration_s`, not the settings default."""
    values = _merged(spec, defaults)
    if spec is None or spec.inconclusive_timeout_s is None:
        values["inconclusive_timeout_s"] = values["duration_s"]
    return MonitorPolicy(**values)  # type: ignore[arg-type]
