"""OpenAPI examples of the optimize endpoints, produced by the real planner from the analysis example."""

from __future__ import annotations

from typing import Any

import msgspec

from performance_agent.analysis.detectors import detect_bottlenecks, summarize
from performance_agent.analysis.examples import EXAMPLE_END, example_figures
from performance_agent.optimization.planner import build_plan
from performance_agent.optimization.schemas import Constraints, GpuSpec, ModelSpec, OptimizationPlan

__all__ = ("optimize_request_example", "plan_example")


def optimize_request_example() -> dict[str, Any]:
    return {
        "instance_id": "vllm-llama-0",
        "objective": "balanced",
        "constraints": {"allow_quantization": True, "max_quality_risk": "low"},
    }


def plan_example() -> dict[str, Any]:
    figures = example_figures()
    findings = detect_bottlenecks(figures).findings
    draft = build_plan(
        findings,
        {"gpu_memory_utilization": "0.9", "block_size": "16", "cache_dtype": "auto", "enable_prefix_caching": "True"},
        engine="vllm",
        engine_version="0.11.0",
        engine_args={"max_num_seqs": 256},
        gpu=GpuSpec(name="H100-80GB", memory_gib=80.0),
        model=ModelSpec(name="meta-llama/Llama-3.1-8B-Instruct", params_b=8.0),
        objective="balanced",
        constraints=Constraints(),
        figures=figures,
    )
    plan = OptimizationPlan(
        plan_id="plan-3f2b8c1d9e7a4b6c8d0e1f2a3b4c5d6e",
        instance_id="vllm-llama-0",
        engine=draft.engine,
        created_at=EXAMPLE_END,
        objective=draft.objective,
        constraints=draft.constraints,
        current_config=draft.current_config,
        recommendations=draft.recommendations,
        findings=findings,
        summary=summarize(detect_bottlenecks(figures)),
        notes=draft.notes,
    )
    return msgspec.to_builtins(plan)  # type: ignore[no-any-return]
