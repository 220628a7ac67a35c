"""OpenAPI examples of the Prometheus endpoints, computed by the real code from one registration."""

from __future__ import annotations

from typing import Any

import msgspec

from performance_agent.engines.registry import ADAPTERS
from performance_agent.fleet.schemas import InstanceSpec, ModelInfo
from performance_agent.fleet.slo import SloTargets
from performance_agent.prometheus.rules import RuleSubject, generate_rules
from performance_agent.prometheus.targets import target_group

__all__ = ("RULES", "TARGETS")

_SPEC = InstanceSpec(
    engine="vllm",
    endpoint="http://10.0.0.5:8000",
    model=ModelInfo(name="meta-llama/Llama-3.1-8B-Instruct"),
)
TARGETS: list[dict[str, Any]] = [msgspec.to_builtins(target_group("vllm-llama-0", _SPEC))]
#: The rule file as a structure (what its YAML parses to): one instance with the default targets.
RULES: dict[str, Any] = msgspec.to_builtins(
    generate_rules(
        [RuleSubject("vllm-llama-0", "vllm", SloTargets())],
        {"vllm": ADAPTERS["vllm"].objective_series},
    ).file
)
