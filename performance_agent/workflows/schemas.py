"""Request and response bodies of the workflow endpoints.

Request Structs forbid unknown fields, so a misspelt guardrail is a 422 instead of a rollout
silently running with the default. Every optional block may be omitted; omitted fields take the
defaults from settings when the workflow is created, and the stored workflow shows the values it
actually runs with. Units follow the API: seconds with `_s`, ratios and increases as fractions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from performance_agent.fleet.schemas import INSTANCE_ID_PATTERN
from performance_agent.judge import AaResult, CohortCounts, JudgeSettings, WindowJudgement
from performance_agent.metrics.effects import MeasuredEffect
from performance_agent.workflows.policy import Guardrails, MonitorPolicy

__all__ = (
    "ActionBody",
    "ActuatorSpec",
    "ActuatorType",
    "ApprovalBody",
    "ApprovalRecord",
    "ApprovalSpec",
    "BaselineSummary",
    "CohortFigures",
    "CohortView",
    "FlagValue",
    "GuardrailSpec",
    "JudgeSpec",
    "MetricCheck",
    "MonitorSpec",
    "ScrapeErrorPolicy",
    "StageEffects",
    "Verdict",
    "WindowRecord",
    "Workflow",
    "WorkflowCreate",
    "WorkflowEvent",
)

InstanceId = Annotated[str, Meta(pattern=INSTANCE_ID_PATTERN, max_length=128)]
FlagName = Annotated[str, Meta(pattern=r"^-{0,2}[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", examples=["--max-num-seqs"])]
EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", examples=["PREFIX_CACHING"])]
FiniteFloat = Annotated[float, Meta(ge=-1e300, le=1e300)]
FlagValue = str | int | FiniteFloat | bool | None
Fraction = Annotated[float, Meta(ge=0, le=100)]
Seconds = Annotated[float, Meta(gt=0, le=7 * 24 * 3600)]
ActuatorType = Literal["webhook", "simulator"]
ScrapeErrorPolicy = Literal["fail", "inconclusive"]
Verdict = Literal["pass", "fail", "inconclusive"]
Reason = Annotated[str, Meta(max_length=2000)]


class ApprovalSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where humans are asked: before the first change (`required`) and before the listed stage indexes."""

    required: bool = False
    stage_gates: Annotated[list[Annotated[int, Meta(ge=0, le=99)]], Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    timeout_s: Seconds | None = None


class MonitorSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How long each stage is watched (warm-up included), how often a health window closes."""

    duration_s: Seconds | None = None
    interval_s: Seconds | None = None
    warmup_s: Annotated[float, Meta(ge=0, le=7 * 24 * 3600)] | None = None
    min_passing_windows: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    inconclusive_timeout_s: Seconds | None = None


class GuardrailSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Relative increases are canary vs control (vs the baseline at 100%) as fractions; the rest are absolute."""

    min_samples: Annotated[int, Meta(ge=0, le=100_000_000)] | None = None
    max_ttft_p99_increase: Fraction | None = None
    max_itl_p99_increase: Fraction | None = None
    max_e2e_p99_increase: Fraction | None = None
    max_error_rate: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_error_rate_increase: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_preemptions_per_s: Annotated[float, Meta(ge=0, le=1e9)] | None = None
    max_preemptions_increase: Fraction | None = None
    max_throughput_decrease: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_ttft_p99_s: Seconds | None = None
    max_itl_p99_s: Seconds | None = None
    max_e2e_p99_s: Seconds | None = None
    consecutive_failures: Annotated[int, Meta(ge=1, le=1000)] | None = None
    on_canary_scrape_error: ScrapeErrorPolicy | None = None
    max_goodput_decrease: Annotated[float, Meta(ge=0, le=1)] | None = None


class JudgeSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The sequential judge: false-rollback budget per workflow and the canary traffic a stage needs."""

    alpha: Annotated[float, Meta(gt=0, le=0.5)] | None = None
    min_canary_requests: Annotated[int, Meta(ge=1, le=100_000_000)] | None = None
    max_stage_extension_s: Annotated[float, Meta(ge=0, le=7 * 24 * 3600)] | None = None


class ActuatorSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`webhook`: one signed POST per stage to `url`. `simulator`: POST `/control/apply` on each simulated instance.

    For `simulator`, `url` is the simulator hub (`http://host:port`, calls go to `/i/{id}/control/apply`,
    which answers even while an instance is down); without it each instance's own base URL is used.
    """

    type: ActuatorType = "webhook"
    url: Annotated[str, Meta(min_length=1, max_length=2048, pattern=r"^[^\s#]+$")] | None = None


class WorkflowCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Either `changes`/`env` or `plan_id` + `recommendation_ids`, never both."""

    instance_ids: Annotated[list[InstanceId], Meta(min_length=1, max_length=10_000)]
    changes: Annotated[dict[FlagName, FlagValue], Meta(max_length=256)] | None = None
    env: Annotated[dict[EnvName, Annotated[str, Meta(max_length=8192)] | None], Meta(max_length=256)] | None = None
    plan_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    recommendation_ids: (
        Annotated[list[Annotated[str, Meta(min_length=1, max_length=128)]], Meta(max_length=64)] | None
    ) = None
    stages: Annotated[list[int], Meta(min_length=1, max_length=100)] | None = None
    approval: ApprovalSpec | None = None
    monitor: MonitorSpec | None = None
    guardrails: GuardrailSpec | None = None
    judge: JudgeSpec | None = None
    actuator: ActuatorSpec | None = None
    description: Annotated[str, Meta(max_length=2000)] | None = None


class ApprovalBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`approver` is recorded as the actor only when auth is off (with auth on, the API key's name is)."""

    approver: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    comment: Reason | None = None


class ActionBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Reason | None = None


# ------------------------------------------------------------------------------- responses


class CohortView(msgspec.Struct, kw_only=True):
    canary: list[str]
    control: list[str]


class CohortFigures(msgspec.Struct, kw_only=True):
    """Display figures of one cohort (or the baseline) over a window; the verdict does not compare them.

    The `*_p99_s` are interpolated inside histogram buckets (`histogram_quantile`), so a p99 from
    a hundred requests can sit anywhere in a bucket 2.5x wide: read the window's `evidence` for
    what was judged (requests above each bucket edge).
    """

    instances: int
    requests: float | None = None
    requests_per_s_per_instance: float | None = None
    ttft_p99_s: float | None = None
    itl_p99_s: float | None = None
    e2e_p99_s: float | None = None
    error_rate: float | None = None
    preemptions_per_s_per_instance: float | None = None


class BaselineSummary(msgspec.Struct, kw_only=True):
    """The pre-rollout capture: display figures, the bucket counts the judge planned from, the A/A check.

    `counts` and `aa_check` are absent from workflows stored before the sequential judge.
    """

    captured_at: datetime
    window_s: float | None
    figures: CohortFigures
    counts: CohortCounts | None = None
    aa_check: AaResult | None = None


class MetricCheck(msgspec.Struct, kw_only=True):
    """One judged metric of a window, in brief: `passed` is null when the window had no data for it.

    `observed` is the metric's running evidence and `threshold` the evidence that rolls back;
    `canary` and `reference` are the shares of requests above the bucket edge carrying the most
    evidence (null for count tests). The full table per edge is in the window's `evidence`.
    Windows stored before the sequential judge hold the old p99 comparisons here.
    """

    metric: str
    kind: Literal["relative", "absolute"]
    canary: float | None
    reference: float | None
    threshold: float
    observed: float | None
    passed: bool | None
    critical: bool


class WindowRecord(msgspec.Struct, kw_only=True):
    seq: int
    stage_index: int
    status: str
    started_at: datetime
    ended_at: datetime
    verdict: Verdict
    critical: bool
    reference: Literal["control", "baseline"]
    reasons: list[str]
    checks: list[MetricCheck]
    canary: CohortFigures
    control: CohortFigures | None
    min_samples: int
    scrape_errors: dict[str, str]
    #: What the judge saw: per metric and edge the counts, shares, margin and evidence (see docs/rollout.md).
    #: Null for a window that could not be read, and in windows stored before the sequential judge.
    evidence: WindowJudgement | None = None
    #: The canary's requests pooled over the stage's judged windows so far (the floor is `judge.min_canary_requests`).
    stage_canary_requests: float | None = None


class StageEffects(msgspec.Struct, kw_only=True):
    """The measured effect of the change over one passed stage (`metrics.effects`), canary against reference.

    Counts are pooled over the judged part of the stage (`window_start`, after the warm-up, to
    `window_end`, when the stage passed); the reference is the control cohort, or the baseline
    captured before the first change when no instance is left unchanged. `final` marks the stage
    whose pass completed the workflow. `note` says why `effects` is empty when it is.
    """

    stage_index: int
    percent: int
    final: bool
    reference: Literal["control", "baseline"]
    window_start: datetime
    window_end: datetime
    canary_instances: int
    reference_instances: int
    canary_requests: float
    reference_requests: float
    effects: list[MeasuredEffect]
    note: str | None = None


class ApprovalRecord(msgspec.Struct, kw_only=True):
    gate: int
    actor: str
    at: datetime
    comment: str | None


class WorkflowEvent(msgspec.Struct, kw_only=True):
    seq: int
    at: datetime
    type: Literal["created", "action", "transition"]
    action: str
    from_status: str | None
    to_status: str
    actor: str
    comment: str | None = None
    reason: str | None = None
    stage_index: int
    details: dict[str, object] = msgspec.field(default_factory=dict)


class Workflow(msgspec.Struct, kw_only=True):
    workflow_id: str
    status: str
    status_reason: str | None
    version: int
    allowed_actions: list[str]
    engine: str
    instance_ids: list[str]
    changes: dict[str, FlagValue]
    env: dict[str, str | None]
    plan_id: str | None
    recommendation_ids: list[str] | None
    description: str | None
    stages: list[int]
    stage_index: int
    percent: int
    changed_count: int
    cohorts: CohortView
    approval: ApprovalSpec
    monitor: MonitorPolicy
    guardrails: Guardrails
    judge: JudgeSettings
    actuator: ActuatorSpec
    created_by: str
    created_at: datetime
    updated_at: datetime
    status_since: datetime
    finished_at: datetime | None
    stage_started_at: datetime | None
    warmup_until: datetime | None
    stage_deadline: datetime | None
    approval_deadline: datetime | None
    baseline: BaselineSummary | None
    approvals: list[ApprovalRecord]
    windows: list[WindowRecord] | None = None
    effects: list[StageEffects] = msgspec.field(default_factory=list)
