"""Shapes of optimization plans: what the planner reads (declared hardware and model) and writes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from performance_agent.analysis.schemas import BottleneckType, Finding, OptimizationType
from performance_agent.engines.knobs import ConfigValue
from performance_agent.metrics.effects import ImpactOutcome

__all__ = (
    "RISK_RANK",
    "ConfigEntry",
    "ConfigSource",
    "Constraints",
    "CurrentConfig",
    "GpuSpec",
    "ImpactRange",
    "ModelSpec",
    "Objective",
    "OptimizationPlan",
    "PlanDraft",
    "PlanOutcome",
    "PlanWithOutcomes",
    "Recommendation",
    "Risk",
    "RiskLevel",
)

Objective = Literal["latency", "throughput", "balanced"]
RiskLevel = Literal["low", "medium", "high"]
RISK_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
ConfigSource = Literal["page", "declared", "engine default", "unknown"]


class Constraints(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    allow_quantization: bool = True
    max_quality_risk: RiskLevel = "low"


class GpuSpec(msgspec.Struct, kw_only=True):
    """What registration declared about the GPUs of one instance (per GPU memory, GPUs per instance)."""

    name: str | None = None
    memory_gib: Annotated[float, msgspec.Meta(gt=0)] | None = None
    count: Annotated[int, msgspec.Meta(ge=1)] = 1


class ModelSpec(msgspec.Struct, kw_only=True):
    """Model architecture as declared at registration; every field is optional and never guessed."""

    name: str | None = None
    params_b: Annotated[float, msgspec.Meta(gt=0)] | None = None
    num_layers: Annotated[int, msgspec.Meta(ge=1)] | None = None
    num_kv_heads: Annotated[int, msgspec.Meta(ge=1)] | None = None
    head_dim: Annotated[int, msgspec.Meta(ge=1)] | None = None
    dtype: str | None = None
    quantization: str | None = None


class ConfigEntry(msgspec.Struct, kw_only=True):
    flag: str | None
    value: ConfigValue
    source: ConfigSource
    note: str | None = None


class CurrentConfig(msgspec.Struct, kw_only=True):
    """The engine settings the plan starts from, each with where it came from."""

    engine: str
    engine_version: str | None
    settings: dict[str, ConfigEntry]
    gpu: GpuSpec | None = None
    model: ModelSpec | None = None
    unknown: list[str] = msgspec.field(default_factory=list)


class ImpactRange(msgspec.Struct, kw_only=True):
    """Relative change as a fraction: -0.35 means 35% lower."""

    low: float
    high: float


class Risk(msgspec.Struct, kw_only=True):
    quality: RiskLevel
    stability: RiskLevel
    notes: list[str] = msgspec.field(default_factory=list)


class Recommendation(msgspec.Struct, kw_only=True):
    id: str
    type: OptimizationType
    title: str
    changes: dict[str, ConfigValue]
    env: dict[str, str]
    rationale: str
    estimated_impact: dict[str, ImpactRange]
    addresses: list[BottleneckType]
    assumptions: list[str]
    risk: Risk
    requires_restart: bool
    executable: bool


class PlanDraft(msgspec.Struct, kw_only=True):
    """Everything a stored plan needs apart from its id, instance and timestamp."""

    engine: str
    objective: Objective
    constraints: Constraints
    current_config: CurrentConfig
    recommendations: list[Recommendation]
    notes: list[str]


class OptimizationPlan(msgspec.Struct, kw_only=True):
    """A stored plan: what `POST /optimize` answers and what rollout workflows start from.

    `findings` are the bottlenecks the plan was built from (with their evidence), so a plan
    read back later still shows why each recommendation was made.
    """

    plan_id: str
    instance_id: str
    engine: str
    created_at: datetime
    objective: Objective
    constraints: Constraints
    current_config: CurrentConfig
    recommendations: list[Recommendation]
    findings: list[Finding]
    summary: str
    notes: list[str]


class PlanOutcome(ImpactOutcome, kw_only=True):
    """One predicted impact of an executed recommendation against what one stage of its workflow measured.

    A workflow that applies several recommendations measures their combined change; each of
    them is compared with that one measurement.
    """

    recommendation_id: str
    workflow_id: str
    workflow_status: str
    stage_index: int
    percent: int
    final: bool


class PlanWithOutcomes(OptimizationPlan, kw_only=True):
    """A stored plan, with the outcomes of its recommendations that rollout workflows executed."""

    outcomes: list[PlanOutcome] = msgspec.field(default_factory=list)
