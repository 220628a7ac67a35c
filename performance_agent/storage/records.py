"""Stored documents' own types: lenient shapes that every schema version's rows decode into.

Why not decode with the API and domain types: request types forbid unknown fields and carry
bounds (`Meta` constraints) that are right for a new request but wrong for a document written a
year ago; renaming or tightening a request field would make in-flight rollouts undecodable after
an upgrade. These records ignore unknown fields, give every field added after the first schema a
default, carry no bounds, and are mapped to and from the domain types here, field by field
(`_counterpart`; one `DocumentCodec` per stored column). The golden rows in tests/fixtures/storage/ are decoded by them.

Nested types that are not request types (the judge's plan and state, figures, findings) are
embedded as they are: they never forbid unknown fields nor carry bounds, and the same rules
apply to them (a field added later gets a default; `tests/unit/test_storage_records.py` checks
that nothing reachable from a record forbids unknown fields or bounds a value).

Mapping builds the domain structs through their constructors, which do not re-check bounds:
what was valid when stored stays readable. A field renamed in a domain type keeps its stored
name in the record, and the rename is mapped in `_counterpart`, the one place records meet
domain types.
"""

from __future__ import annotations

# The record field lists repeat the domain types' on purpose: they are the stored shape, kept
# apart so the API and domain types can change without breaking stored documents. The
# duplicate-code check is told to expect that here.
# pylint: disable=duplicate-code
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec
from msgspec import inspect

from performance_agent.analysis.schemas import AlertState, Finding
from performance_agent.fleet.schemas import GpuInfo, HeaderFromEnv, InstanceError, InstanceSpec, ModelInfo
from performance_agent.fleet.slo import SloTargets
from performance_agent.judge import JudgePlan, JudgeSettings, JudgeState, WindowJudgement
from performance_agent.judgements.schemas import JudgementStatus, JudgementVerdict
from performance_agent.judgements.state import JudgementDoc
from performance_agent.optimization.schemas import (
    ConfigEntry,
    Constraints,
    CurrentConfig,
    GpuSpec,
    ModelSpec,
    OptimizationPlan,
    Recommendation,
)
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

__all__ = (
    "ALERT",
    "CODECS",
    "COUNTERPARTS",
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
    "CurrentConfigRecord",
    "DocumentCodec",
    "GpuInfoRecord",
    "GpuSpecRecord",
    "HeaderFromEnvRecord",
    "InstanceErrorRecord",
    "InstanceRecord",
    "JudgementRecord",
    "ModelInfoRecord",
    "ModelSpecRecord",
    "PlanRecord",
    "SloTargetsRecord",
    "WindowRecordDoc",
    "WorkflowDocRecord",
    "WorkflowEventRecord",
    "inner_types",
)

D = TypeVar("D", bound=msgspec.Struct)
R = TypeVar("R", bound=msgspec.Struct)
ConfigValue = str | int | float | bool | None


#: Every record type and the domain type it stores, both ways (filled by `_pair`).
COUNTERPARTS: dict[type[msgspec.Struct], type[msgspec.Struct]] = {}


def _pair(record: type[msgspec.Struct], domain: type[msgspec.Struct]) -> None:
    COUNTERPARTS[record] = domain
    COUNTERPARTS[domain] = record


def inner_types(info: inspect.Type) -> list[inspect.Type]:
    """The types one level inside `info` (a struct's fields, a container's items, a union's members)."""
    if isinstance(info, inspect.StructType):
        return [field.type for field in info.fields]
    if isinstance(info, inspect.Metadata):
        return [info.type]
    if isinstance(info, inspect.UnionType):
        return list(info.types)
    if isinstance(info, inspect.TupleType):
        return list(info.item_types)
    if isinstance(info, (inspect.ListType, inspect.SetType, inspect.FrozenSetType, inspect.VarTupleType)):
        return [info.item_type]
    if isinstance(info, inspect.DictType):
        return [info.value_type]
    return []


def _holds_pair(info: inspect.Type, seen: set[type]) -> bool:
    """Whether a value of this type may hold a struct of a known pair (which must then be rebuilt)."""
    if isinstance(info, inspect.StructType):
        if info.cls in COUNTERPARTS:
            return True
        if info.cls in seen:
            return False
        seen.add(info.cls)
    return any(_holds_pair(inner, seen) for inner in inner_types(info))


_FieldPlan = tuple[type[msgspec.Struct], tuple[str, ...], tuple[str, ...]]
_FIELD_PLANS: dict[type[msgspec.Struct], _FieldPlan] = {}


def _field_plan(source: type[msgspec.Struct]) -> _FieldPlan:
    """The counterpart of `source`, the shared fields to rebuild, and those copied as they are.

    Worked out once per type, so mapping a workflow document descends only where a paired
    struct can be (its approval and actuator), not into the judge's plan and state.
    """
    known = _FIELD_PLANS.get(source)
    if known is not None:
        return known
    target = COUNTERPARTS[source]
    shared = set(target.__struct_fields__)
    info = inspect.type_info(source)
    assert isinstance(info, inspect.StructType)
    rebuilt = tuple(field.name for field in info.fields if field.name in shared and _holds_pair(field.type, set()))
    copied = tuple(name for name in source.__struct_fields__ if name in shared and name not in rebuilt)
    _FIELD_PLANS[source] = (target, rebuilt, copied)
    return _FIELD_PLANS[source]


def _counterpart(value: Any) -> Any:
    """`value` with every struct of a known pair rebuilt as its counterpart, field by field, at any depth.

    Through the constructors, which do not re-check bounds: what was valid when stored stays
    readable. A field the target lacks is dropped (a record may keep what an older agent wrote);
    one the source lacks takes the target's default. Other values are kept as they are.
    """
    if type(value) in COUNTERPARTS:
        target, rebuilt, copied = _field_plan(type(value))
        fields = {name: getattr(value, name) for name in copied}
        for name in rebuilt:
            fields[name] = _counterpart(getattr(value, name))
        return target(**fields)
    if isinstance(value, list):
        return [_counterpart(item) for item in value]
    if isinstance(value, dict):
        return {key: _counterpart(item) for key, item in value.items()}
    return value


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


class GpuSpecRecord(msgspec.Struct, kw_only=True):
    name: str | None = None
    memory_gib: float | None = None
    count: int = 1


class ModelSpecRecord(msgspec.Struct, kw_only=True):
    name: str | None = None
    params_b: float | None = None
    num_layers: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    dtype: str | None = None
    quantization: str | None = None


class CurrentConfigRecord(msgspec.Struct, kw_only=True):
    engine: str
    engine_version: str | None = None
    settings: dict[str, ConfigEntry] = msgspec.field(default_factory=dict)
    gpu: GpuSpecRecord | None = None
    model: ModelSpecRecord | None = None
    unknown: list[str] = msgspec.field(default_factory=list)


class PlanRecord(msgspec.Struct, kw_only=True):
    """The `plans.doc` column (an `OptimizationPlan`)."""

    plan_id: str
    instance_id: str
    engine: str
    created_at: datetime
    objective: Literal["latency", "throughput", "balanced"]
    constraints: ConstraintsRecord = msgspec.field(default_factory=ConstraintsRecord)
    current_config: CurrentConfigRecord
    recommendations: list[Recommendation] = msgspec.field(default_factory=list)
    findings: list[Finding] = msgspec.field(default_factory=list)
    summary: str = ""
    notes: list[str] = msgspec.field(default_factory=list)


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
    """One stored document column: its record type and the domain type it is read as."""

    def __init__(self, record: type[R], domain: type[D]) -> None:
        self.record = record
        self.domain = domain
        self._decoder = msgspec.json.Decoder(record)

    def encode(self, value: D) -> bytes:
        return _encoder.encode(_counterpart(value))

    def decode(self, data: bytes) -> D:
        decoded: D = _counterpart(self._decoder.decode(data))
        return decoded


_pair(HeaderFromEnvRecord, HeaderFromEnv)
_pair(GpuInfoRecord, GpuInfo)
_pair(ModelInfoRecord, ModelInfo)
_pair(SloTargetsRecord, SloTargets)
_pair(ConstraintsRecord, Constraints)
_pair(GpuSpecRecord, GpuSpec)
_pair(ModelSpecRecord, ModelSpec)
_pair(CurrentConfigRecord, CurrentConfig)
_pair(ApprovalSpecRecord, ApprovalSpec)
_pair(ActuatorSpecRecord, ActuatorSpec)

INSTANCE_SPEC = DocumentCodec(InstanceRecord, InstanceSpec)
INSTANCE_ERROR = DocumentCodec(InstanceErrorRecord, InstanceError)
PLAN = DocumentCodec(PlanRecord, OptimizationPlan)
ALERT = DocumentCodec(AlertRecord, AlertState)
WORKFLOW = DocumentCodec(WorkflowDocRecord, WorkflowDoc)
WORKFLOW_EVENT = DocumentCodec(WorkflowEventRecord, WorkflowEvent)
WINDOW = DocumentCodec(WindowRecordDoc, WindowRecord)
JUDGEMENT = DocumentCodec(JudgementRecord, JudgementDoc)
CODECS: tuple[DocumentCodec[Any, Any], ...] = (
    INSTANCE_SPEC,
    INSTANCE_ERROR,
    PLAN,
    ALERT,
    WORKFLOW,
    WORKFLOW_EVENT,
    WINDOW,
    JUDGEMENT,
)
for _codec in CODECS:
    _pair(_codec.record, _codec.domain)
