"""Turn findings into an ordered, engine-specific tuning plan.

Order: the option addressing the most severe finding first; among equals, one whose
preconditions could be checked, then the one that best serves the objective, then the one
addressing more findings, then lower quality and stability risk, executable before advice.
Two options that set the same flag conflict: the later one is dropped with a note, so a plan
never both raises and lowers `--max-num-seqs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.analysis.schemas import SEVERITY_RANK, BottleneckType, Finding
from performance_agent.optimization.batching_options import batching_options
from performance_agent.optimization.config import resolve_current_config
from performance_agent.optimization.context import Candidate, PlanContext
from performance_agent.optimization.impact import fit_step_time
from performance_agent.optimization.kv_options import kv_options
from performance_agent.optimization.quantization_options import quantization_options
from performance_agent.optimization.schemas import (
    RISK_RANK,
    Constraints,
    GpuSpec,
    ModelSpec,
    Objective,
    PlanDraft,
    Recommendation,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from performance_agent.analysis.schemas import WindowFigures
    from performance_agent.engines.knobs import ConfigValue

__all__ = ("build_plan", "plan")


def _significant(findings: Sequence[Finding], notes: list[str]) -> dict[BottleneckType, Finding]:
    """One finding per type (the most severe); low-severity findings are not worth a restart."""
    chosen: dict[BottleneckType, Finding] = {}
    for finding in findings:
        if finding.severity == "low":
            notes.append(f"{finding.type} is only low severity: no change proposed for it")
            continue
        known = chosen.get(finding.type)
        if known is None or SEVERITY_RANK[finding.severity] > SEVERITY_RANK[known.severity]:
            chosen[finding.type] = finding
    return chosen


def _order_key(ctx: PlanContext, candidate: Candidate) -> tuple[int, int, int, int, int, int, int, str]:
    rec = candidate.recommendation
    return (
        -ctx.most_severe(rec.addresses),
        1 if candidate.unverified else 0,
        -candidate.objective_fit.get(ctx.objective, 0),
        -len(rec.addresses),
        RISK_RANK[rec.risk.quality],
        RISK_RANK[rec.risk.stability],
        0 if rec.executable else 1,
        rec.id,
    )


def _without_conflicts(ordered: list[Candidate], notes: list[str]) -> list[Recommendation]:
    """Drop options that set a flag an earlier option already sets.

    Quantization methods are the exception: they are alternatives to one another (each needs
    its own checkpoint or kernel), listed together so the user can choose one.
    """
    taken: dict[str, Recommendation] = {}
    kept: list[Recommendation] = []
    for candidate in ordered:
        rec = candidate.recommendation
        keys = [*rec.changes, *rec.env]
        clash = next(
            (k for k in keys if k in taken and not (rec.type == taken[k].type == "quantization")),
            None,
        )
        if clash is not None:
            notes.append(f"{rec.id} dropped: it also sets {clash}, which {taken[clash].id} sets first")
            continue
        for key in keys:
            taken.setdefault(key, rec)
        kept.append(rec)
    return kept


def build_plan(
    findings: Sequence[Finding],
    engine_config: Mapping[str, ConfigValue],
    *,
    engine: str,
    engine_version: str | None = None,
    engine_args: Mapping[str, ConfigValue] | None = None,
    gpu: GpuSpec | None = None,
    model: ModelSpec | None = None,
    objective: Objective = "balanced",
    constraints: Constraints | None = None,
    figures: WindowFigures | None = None,
    history: Sequence[WindowFigures] = (),
) -> PlanDraft:
    """The full plan: current config with sources, ordered recommendations, and what was not offered.

    `engine_config` is what the page revealed (`InstanceSnapshot.engine_config`); `engine_args`,
    `gpu` and `model` are what registration declared. `figures` are the analysed window's
    figures (batch sizes, rates); `history` the per-scrape windows, used to fit decode step
    time against batch size when the batch varied enough.
    """
    limits = constraints or Constraints()
    config = resolve_current_config(engine, engine_config, engine_args, gpu, model, engine_version)
    notes: list[str] = []
    chosen = _significant(findings, notes)
    observations = [
        (w.load.requests_running, w.latency.itl_s.mean)
        for w in history
        if w.load.requests_running is not None and w.latency.itl_s.mean is not None
    ]
    ctx = PlanContext(
        engine=engine,
        config=config,
        figures=figures,
        findings=chosen,
        objective=objective,
        constraints=limits,
        step_fit=fit_step_time(observations),
        notes=notes,
    )
    if figures is None and chosen:
        notes.append("no window figures given: batch sizes and rates could not inform the estimates")
    candidates = [c for c in (*kv_options(ctx), *batching_options(ctx), *quantization_options(ctx)) if c]
    candidates = [c for c in candidates if c.recommendation.addresses]
    candidates.sort(key=lambda c: _order_key(ctx, c))
    recommendations = _without_conflicts(candidates, notes)
    addressed = {t for rec in recommendations for t in rec.addresses}
    for bottleneck in chosen:
        if bottleneck not in addressed:
            notes.append(f"no tuning option found for {bottleneck} with what is known about this instance")
    for unknown in config.unknown:
        notes.append(f"unknown: {unknown} (declare it at registration for tighter estimates)")
    return PlanDraft(
        engine=engine,
        objective=objective,
        constraints=limits,
        current_config=config,
        recommendations=recommendations,
        notes=notes,
    )


def plan(
    findings: Sequence[Finding],
    engine_config: Mapping[str, ConfigValue],
    *,
    engine: str,
    engine_version: str | None = None,
    engine_args: Mapping[str, ConfigValue] | None = None,
    gpu: GpuSpec | None = None,
    model: ModelSpec | None = None,
    objective: Objective = "balanced",
    constraints: Constraints | None = None,
    figures: WindowFigures | None = None,
    history: Sequence[WindowFigures] = (),
) -> list[Recommendation]:
    """Only the ordered recommendations of `build_plan`."""
    return build_plan(
        findings,
        engine_config,
        engine=engine,
        engine_version=engine_version,
        engine_args=engine_args,
        gpu=gpu,
        model=model,
        objective=objective,
        constraints=constraints,
        figures=figures,
        history=history,
    ).recommendations
