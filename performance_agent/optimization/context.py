"""What every option builder reads: findings, observed figures, current config, and how to cite them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.analysis.schemas import SEVERITY_RANK, BottleneckType, Finding, WindowFigures
from performance_agent.engines.knobs import ConfigValue, knob
from performance_agent.optimization.impact import StepTimeFit, dtype_bytes
from performance_agent.optimization.schemas import (
    Constraints,
    CurrentConfig,
    ImpactRange,
    Objective,
    Recommendation,
    Risk,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from performance_agent.analysis.schemas import OptimizationType
    from performance_agent.optimization.impact import Estimate

__all__ = ("KV_LIMIT_USAGE", "Candidate", "PlanContext", "impact", "round_up")


# KV usage from which the pool, not the scheduler caps, bounds the batch (the lowest KV threshold rung)
KV_LIMIT_USAGE = 0.8


def round_up(value: float, multiple: int) -> int:
    return int(-(-value // multiple) * multiple)


def impact(estimate: Estimate) -> ImpactRange:
    return ImpactRange(low=round(estimate.low, 4), high=round(estimate.high, 4))


@dataclass(slots=True)
class Candidate:
    """A recommendation plus what ordering needs.

    `objective_fit` scores how well it serves each objective (0-2); `unverified` marks an option
    whose precondition (e.g. GPU support) could not be checked, so it ranks after checked ones.
    """

    recommendation: Recommendation
    objective_fit: dict[str, int]
    unverified: bool = False


@dataclass(slots=True)
class PlanContext:
    engine: str
    config: CurrentConfig
    figures: WindowFigures | None
    findings: dict[BottleneckType, Finding]
    objective: Objective
    constraints: Constraints
    step_fit: StepTimeFit | None = None
    notes: list[str] = field(default_factory=list)

    def value(self, concept: str) -> ConfigValue:
        entry = self.config.settings.get(concept)
        return entry.value if entry is not None else None

    def number(self, concept: str) -> float | None:
        value = self.value(concept)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def flag(self, concept: str) -> str | None:
        entry = knob(self.engine, concept)
        return entry.flag if entry is not None else None

    def has(self, *types: BottleneckType) -> bool:
        return any(t in self.findings for t in types)

    def present(self, types: list[BottleneckType]) -> list[BottleneckType]:
        return [t for t in types if t in self.findings]

    @property
    def gpu_memory_gib(self) -> float | None:
        return self.config.gpu.memory_gib if self.config.gpu else None

    @property
    def gpu_count(self) -> int:
        return self.config.gpu.count if self.config.gpu else 1

    @property
    def gpu_name(self) -> str | None:
        return self.config.gpu.name if self.config.gpu else None

    @property
    def params_b(self) -> float | None:
        return self.config.model.params_b if self.config.model else None

    @property
    def model_dtype(self) -> str | None:
        return self.config.model.dtype if self.config.model else None

    def weight_bits(self) -> tuple[float, bool]:
        """Bits per weight of the served checkpoint and whether that is declared (else 16 assumed)."""
        size = dtype_bytes(self.model_dtype)
        if size is not None:
            return size * 8, True
        return 16.0, False

    def kv_pool_bytes(self) -> float | None:
        """KV pool in bytes when the page gives its size in tokens and the model shape is declared."""
        tokens = self.number("kv_pool_tokens")
        if tokens is None:
            blocks, block = self.number("kv_pool_blocks"), self.number("block_size")
            tokens = blocks * block if blocks is not None and block is not None else None
        model = self.config.model
        if tokens is None or model is None or None in (model.num_layers, model.num_kv_heads, model.head_dim):
            return None
        cache = self.value("kv_cache_dtype")
        size = dtype_bytes(cache if isinstance(cache, str) else "auto", self.model_dtype)
        if size is None or model.num_layers is None or model.num_kv_heads is None or model.head_dim is None:
            return None
        return tokens * 2.0 * model.num_layers * model.num_kv_heads * model.head_dim * size

    def kv_limited(self) -> bool | None:
        """Whether KV room is what bounds the batch; None when the page cannot tell.

        TGI's reserved-token ratio counts here: it is exactly what its admission checks.
        """
        if "kv_cache_pressure" in self.findings:
            return True
        if self.figures is None:
            return None
        usage = self.figures.load.kv_cache_usage
        preemptions = self.figures.load.preemptions_per_s
        if usage is None and preemptions is None:
            return None
        return (usage is not None and usage >= KV_LIMIT_USAGE) or (preemptions is not None and preemptions > 0)

    def cite(self, types: list[BottleneckType]) -> str:
        """`queueing (high: load.requests_waiting 6.2 >= 1)` for each finding the option addresses."""
        parts = []
        for bottleneck in types:
            finding = self.findings.get(bottleneck)
            if finding is None:
                continue
            evidence = ", ".join(
                f"{metric} {item.observed:.4g} {item.comparison} {item.threshold:.4g}"
                for metric, item in finding.evidence.items()
            )
            parts.append(f"{bottleneck} ({finding.severity}: {evidence})")
        return "; ".join(parts)

    def most_severe(self, types: list[BottleneckType]) -> int:
        return max((SEVERITY_RANK[self.findings[t].severity] for t in types if t in self.findings), default=-1)

    def build(
        self,
        *,
        slug: str,
        kind: OptimizationType,
        title: str,
        addresses: list[BottleneckType],
        because: str,
        changes: Mapping[str, ConfigValue] | None = None,
        env: Mapping[str, str] | None = None,
        estimated: dict[str, Estimate],
        assumptions: list[str] | None = None,
        risk: Risk,
        executable: bool = True,
        fit: dict[str, int],
        unverified: bool = False,
    ) -> Candidate:
        notes: list[str] = []
        for estimate in estimated.values():
            notes.extend(a for a in estimate.assumptions if a not in notes)
        notes.extend(a for a in assumptions or [] if a not in notes)
        for concept, entry in self.config.settings.items():
            touched = {**(changes or {}), **(env or {})}
            if entry.source == "unknown" and entry.flag is not None and entry.flag in touched:
                notes.append(f"current {entry.flag} unknown ({concept}): not on the page and not declared")
        recommendation = Recommendation(
            id=f"{kind}:{slug}",
            type=kind,
            title=title,
            changes=dict(changes or {}),
            env=dict(env or {}),
            rationale=f"Addresses {self.cite(addresses)}. {because}",
            estimated_impact={metric: impact(e) for metric, e in estimated.items()},
            addresses=addresses,
            assumptions=notes,
            risk=risk,
            requires_restart=True,
            executable=executable,
        )
        return Candidate(recommendation, fit, unverified)
