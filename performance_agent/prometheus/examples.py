"""OpenAPI examples of the Prometheus endpoints, computed by the real code from one registration."""

from __future__ import annotations

from typing import Any

import msgspec

from performance_agent.engines.registry import ADAPTERS
from performance_agent.fleet.schemas import InstanceSpec, ModelInfo
from performance_agent.fleet.slo import SloTargets
from performance_agent.prometheus.rules import RuleSubject, rules_yaml
from performance_agent.prometheus.targets import target_group

__all__ = ("RULES", "TARGETS")

_SPEC = InstanceSpec(
    engine="vllm",
    endpoint="http://10.0.0.5:8000",
    model=ModelInfo(name="meta-llama/Llama-3.1-8B-Instruct"),
)
TARGETS: list[dict[str, Any]] = [msgspec.to_builtins(target_group("vllm-llama-0", _SPEC))]
RULES = rules_yaml(
    [RuleSubject("vllm-llama-0", "vllm", SloTargets(ttft_p95_s=1.0, min_generation_tokens_per_s=None))],
    {"vllm": ADAPTERS["vllm"].objective_series},
)
