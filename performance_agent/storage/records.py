"""Stored documents' own types: lenient shapes that every schema version's rows decode into.

Why not decode with the API and domain types: request types forbid unknown fields and carry
bounds (`Meta` constraints) that are right for a new request but wrong for a document written a
year ago; renaming or tightening a request field would make in-flight rollouts undecodable after
an upgrade. These records ignore unknown fields, give every field added after the first schema a
default, carry no bounds, and are mapped to and from the domain types here, once per type
(one `DocumentCodec` per stored column). The golden rows in tests/fixtures/storage/ are decoded by them.

Nested types that are not request types (the judge's plan and state, figures, findings) are
embedded as they are: they never forbid unknown fields, and the same rules apply to them (a
field added later gets a default; `tests/unit/test_storage_records.py` checks that nothing
reachable from a record forbids unknown fields).

Mapping builds the domain structs through their constructors, which do not re-check bounds:
what was valid when stored stays readable.
"""

from __future__ import annotations

# The record field lists repeat the domain types' on purpose: they are the stored shape, kept
# apart so the API and domain types can change without breaking stored documents. The
# duplicate-code check is told to expect that here.
# pylint: disable=duplicate-code
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import msgspec

from performance_agent.analysis.schemas import AlertState, Finding
from performance_agent.fleet.schemas import GpuInfo, HeaderFromEnv, InstanceError, InstanceSpec, ModelInfo
from performance_agent.fleet.slo import SloTargets
from performance_agent.judge import JudgePlan, JudgeSettings, JudgeState, WindowJudgement
from performance_agent.judgements.schemas import JudgementStatus, JudgementVerdict
from performance_agent.judgements.state import JudgementDoc
from performance_agent.optimization.schemas import Constraints, CurrentConfig, OptimizationPlan, Recommendation
from performance_agent.workflows.gate import StageProgress
from performance_agent.workflows.policy import Guardrails, MonitorPolicy
from performance_agent.workflows.schemas import (
    ActuatorSpec,
    ApprovalRecord,
    ApprovalSpec,
    BaselineSummary,
    CohortFigures,
    MetricCheck,
    StageEffects,
    WindowRecord,
    WorkflowEvent,
)
from performance_agent.workflows.state import WorkflowDoc

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "ALERT",
    "INSTANCE_ERROR",
    "INSTANCE_SPEC",
    "JUDGEMENT",
    "PLAN",
    "WINDOW",
    "WORKFLOW",
    "WORKFLOW_EVENT",
    "ActuatorSpecRecord",
    "AlertRecord",
    "ApprovalSpecRecord",
    "ConstraintsRecord",
    "DocumentCodec",
    "GpuInfoRecord",
    "HeaderFromEnvRecord",
    "InstanceErrorRecord",
    "InstanceRecord",
    "JudgementRecord",
    "ModelInfoRecord",
    "PlanRecord",
    "SloTargetsRecord",
    "WindowRecordDoc",
    "WorkflowDocRecord",
    "WorkflowEventRecord",
    "instance_spec_from_record",
    "instance_spec_record",
    "plan_from_record",
    "plan_record",
    "workflow_from_record",
    "workflow_record",
)

T = TypeVar("T", bound=msgspec.Struct)
D = TypeVar("D", bound=msgspec.Struct)
R = TypeVar("R", bound=msgspec.Struct)
ConfigValue = str | int | float | bool | None


def _rebuild(target: type[T], source: msgspec.Struct, **replaced: Any) -> T:
    """`target` from `source`'s fields of the same name (both ways); `replaced` holds the mapped nested values.

    A field the target lacks is dropped (a record keeps what an older agent wrote); one the
    source lacks takes the target's default.
    """
    names = set(target.__struct_fields__)
    values = {name: getattr(source, name) for name in source.__struct_fields__ if name in names}
    values.update(replaced)
    return target(**values)


# ------------------------------------------------------------------------------------- instances


class HeaderFromEnvRecord(msgspec.Struct, kw_only=True):
    env: str
    prefix: str = ""


class GpuInfoRecord(msgspec.Struct, kw_only=True):
    model: str | None = None
    memory_gib: float | None = None
    count: int | None = None


class ModelInfoRecord(msgspec.Struct, kw_only=True):
    name: str | None = None
    architecture: str | None = None
    parameters_b: float | None = None
    max_model_len: int | None = None


class SloTargetsRecord(msgspec.Struct, kw_only=True):
    ttft_p99_s: float = 2.0
    ttft_p95_s: float = 1.0
    itl_p99_s: float = 0.1
    e2e_p99_s: float = 30.0
    error_rate: float = 0.01
    min_generation_tokens_per_s: float | None = None
    target_ratio: float = 0.99


class InstanceRecord(msgspec.Struct, kw_only=True):
    """The `instances.record` column (an `InstanceSpec`)."""

    engine: str
    endpoint: str | None = None
    source: Literal["scrape", "prometheus"] = "scrape"
    match: str | None = None
    metrics_path: str = "/metrics"
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    engine_args: dict[str, ConfigValue] = msgspec.field(default_factory=dict)
    gpu: GpuInfoRecord | None = None
    model: ModelInfoRecord | None = None
    headers: dict[str, str | HeaderFromEnvRecord] = msgspec.field(default_factory=dict)
    tls_verify: bool = True
    ca_bundle: str | None = None
    slo: SloTargetsRecord | None = None
    discovered: bool = False
    gone_since: datetime | None = None


def instance_spec_from_record(record: InstanceRecord) -> InstanceSpec:
    return _rebuild(
        InstanceSpec,
        record,
        gpu=None if record.gpu is None else _rebuild(GpuInfo, record.gpu),
        model=None if record.model is None else _rebuild(ModelInfo, record.model),
        headers={
            name: value if isinstance(value, str) else _rebuild(HeaderFromEnv, value)
            for name, value in record.headers.items()
        },
        slo=None if record.slo is None else _rebuild(SloTargets, record.slo),
    )


def instance_spec_record(spec: InstanceSpec) -> InstanceRecord:
    return _rebuild(
        InstanceRecord,
        spec,
        gpu=None if spec.gpu is None else _rebuild(GpuInfoRecord, spec.gpu),
        model=None if spec.model is None else _rebuild(ModelInfoRecord, spec.model),
        headers={
            name: value if isinstance(value, str) else _rebuild(HeaderFromEnvRecord, value)
            for name, value in spec.headers.items()
        },
        slo=None if spec.slo is None else _rebuild(SloTargetsRecord, spec.slo),
    )


class InstanceErrorRecord(msgspec.Struct, kw_only=True):
    """The `instances.last_error` column (an `InstanceError`)."""

    code: str
    message: str
    at: datetime
    upstream_status: int | None = None


# ----------------------------------------------------------------------------------------- plans


class ConstraintsRecord(msgspec.Struct, kw_only=True):
    allow_quantization: bool = True
    max_quality_risk: Literal["low", "medium", "high"] = "low"


class PlanRecord(msgspec.Struct, kw_only=True):
    """The `plans.doc` column (an `OptimizationPlan`)."""

    plan_id: str
    instance_id: str
    engine: str
    created_at: datetime
    objective: Literal["latency", "throughput", "balanced"]
    constraints: ConstraintsRecord = msgspec.field(default_factory=ConstraintsRecord)
    current_config: CurrentConfig
    recommendations: list[Recommendation] = msgspec.field(default_factory=list)
    findings: list[Finding] = msgspec.field(default_factory=list)
    summary: str = ""
    notes: list[str] = msgspec.field(default_factory=list)


def plan_from_record(record: PlanRecord) -> OptimizationPlan:
    return _rebuild(OptimizationPlan, record, constraints=_rebuild(Constraints, record.constraints))


def plan_record(plan: OptimizationPlan) -> PlanRecord:
    return _rebuild(PlanRecord, plan, constraints=_rebuild(ConstraintsRecord, plan.constraints))


# ---------------------------------------------------------------------------------------- alerts


class AlertRecord(msgspec.Struct, kw_only=True):
    """The `alerts.doc` column (an `AlertState`)."""

    instance_id: str
    objective: str
    pair: str
    state: Literal["firing", "resolved"]
    started_at: datetime
    ended_at: datetime | None = None
    factor: float
    burn_rate_long: float | None = None
    burn_rate_short: float | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    fingerprint: str = ""


# ------------------------------------------------------------------------------------- workflows


class ApprovalSpecRecord(msgspec.Struct, kw_only=True):
    required: bool = False
    stage_gates: list[int] = msgspec.field(default_factory=list)
    timeout_s: float | None = None


class ActuatorSpecRecord(msgspec.Struct, kw_only=True):
    type: Literal["webhook", "simulator"] = "webhook"
    url: str | None = None


FlagValue = str | int | float | bool | None


class WorkflowDocRecord(msgspec.Struct, kw_only=True):
    """The `workflows.doc` column (a `WorkflowDoc`)."""

    workflow_id: str
    engine: str
    instance_ids: list[str]
    changes: dict[str, FlagValue] = msgspec.field(default_factory=dict)
    env: dict[str, str | None] = msgspec.field(default_factory=dict)
    previous: dict[str, dict[str, FlagValue] | None] = msgspec.field(default_factory=dict)
    plan_id: str | None = None
    recommendation_ids: list[str] | None = None
    description: str | None = None
    stages: list[int]
    approval: ApprovalSpecRecord = msgspec.field(default_factory=ApprovalSpecRecord)
    monitor: MonitorPolicy
    guardrails: Guardrails
    judge: JudgeSettings | None = None
    actuator: ActuatorSpecRecord = msgspec.field(default_factory=ActuatorSpecRecord)
    actuator_url_from_settings: bool = False
    created_by: str
    created_at: float
    updated_at: float
    status: str
    status_reason: str | None = None
    status_since: float
    stage_index: int = 0
    changed_count: int = 0
    finished_at: float | None = None
    next_due_at: float | None = None
    approval_deadline: float | None = None
    baseline_started_at: float | None = None
    baseline_deadline: float | None = None
    baseline_marks: dict[str, float] = msgspec.field(default_factory=dict)
    baseline: BaselineSummary | None = None
    stage_started_at: float | None = None
    progress: StageProgress | None = None
    judge_plan: JudgePlan | None = None
    judge_state: JudgeState | None = None
    window_started_at: float | None = None
    window_marks: dict[str, float] = msgspec.field(default_factory=dict)
    next_window_at: float | None = None
    approvals: list[ApprovalRecord] = msgspec.field(default_factory=list)
    effects: list[StageEffects] = msgspec.field(default_factory=list)


def workflow_from_record(record: WorkflowDocRecord) -> WorkflowDoc:
    return _rebuild(
        WorkflowDoc,
        record,
        approval=_rebuild(ApprovalSpec, record.approval),
        actuator=_rebuild(ActuatorSpec, record.actuator),
    )


def workflow_record(doc: WorkflowDoc) -> WorkflowDocRecord:
    return _rebuild(
        WorkflowDocRecord,
        doc,
        approval=_rebuild(ApprovalSpecRecord, doc.approval),
        actuator=_rebuild(ActuatorSpecRecord, doc.actuator),
    )


class WorkflowEventRecord(msgspec.Struct, kw_only=True):
    """The `workflow_events.event` column (a `WorkflowEvent`)."""

    seq: int
    at: datetime
    type: Literal["created", "action", "transition"]
    action: str
    from_status: str | None = None
    to_status: str
    actor: str
    comment: str | None = None
    reason: str | None = None
    stage_index: int = 0
    details: dict[str, object] = msgspec.field(default_factory=dict)


class WindowRecordDoc(msgspec.Struct, kw_only=True):
    """The `workflow_windows.window` column (a `WindowRecord`)."""

    seq: int
    stage_index: int
    status: str
    started_at: datetime
    ended_at: datetime
    verdict: Literal["pass", "fail", "inconclusive"]
    critical: bool = False
    reference: Literal["control", "baseline"] = "control"
    reasons: list[str] = msgspec.field(default_factory=list)
    checks: list[MetricCheck] = msgspec.field(default_factory=list)
    canary: CohortFigures
    control: CohortFigures | None = None
    min_samples: int = 0
    scrape_errors: dict[str, str] = msgspec.field(default_factory=dict)
    evidence: WindowJudgement | None = None
    stage_canary_requests: float | None = None


# ------------------------------------------------------------------------------------ judgements


class JudgementRecord(msgspec.Struct, kw_only=True):
    """The `judgements.doc` column (a `JudgementDoc`)."""

    judgement_id: str
    canary_instance_ids: list[str]
    control_instance_ids: list[str]
    interval_s: float
    max_duration_s: float
    guardrails: Guardrails
    judge: JudgeSettings
    created_by: str
    created_at: float
    updated_at: float
    status: JudgementStatus = "running"
    verdict: JudgementVerdict = "running"
    reason: str | None = None
    finished_at: float | None = None
    next_due_at: float | None = None
    window_started_at: float | None = None
    marks: dict[str, float] = msgspec.field(default_factory=dict)
    windows: int = 0
    inconclusive_windows: int = 0
    canary_scrape_failures: int = 0
    canary_requests: float = 0.0
    control_requests: float = 0.0
    scrape_errors: dict[str, str] = msgspec.field(default_factory=dict)
    plan: JudgePlan | None = None
    state: JudgeState | None = None
    evidence: WindowJudgement | None = None


# ------------------------------------------------------------------------------- encode / decode

_encoder = msgspec.json.Encoder()


class DocumentCodec(Generic[D, R]):
    """One stored document column: its record type, and the domain type it maps to and from.

    Without mapping functions the two types are mapped field by field (`_rebuild`); types with
    nested request types pass their own.
    """

    def __init__(
        self,
        record: type[R],
        domain: type[D],
        *,
        from_record: Callable[[R], D] | None = None,
        to_record: Callable[[D], R] | None = None,
    ) -> None:
        self.record = record
        self._decoder = msgspec.json.Decoder(record)
        self._from_record = from_record or (lambda stored: _rebuild(domain, stored))
        self._to_record = to_record or (lambda value: _rebuild(record, value))

    def encode(self, value: D) -> bytes:
        return _encoder.encode(self._to_record(value))

    def decode(self, data: bytes) -> D:
        return self._from_record(self._decoder.decode(data))


INSTANCE_SPEC = DocumentCodec(
    InstanceRecord, InstanceSpec, from_record=instance_spec_from_record, to_record=instance_spec_record
)
INSTANCE_ERROR = DocumentCodec(InstanceErrorRecord, InstanceError)
PLAN = DocumentCodec(PlanRecord, OptimizationPlan, from_record=plan_from_record, to_record=plan_record)
ALERT = DocumentCodec(AlertRecord, AlertState)
WORKFLOW = DocumentCodec(WorkflowDocRecord, WorkflowDoc, from_record=workflow_from_record, to_record=workflow_record)
WORKFLOW_EVENT = DocumentCodec(WorkflowEventRecord, WorkflowEvent)
WINDOW = DocumentCodec(WindowRecordDoc, WindowRecord)
JUDGEMENT = DocumentCodec(JudgementRecord, JudgementDoc)
