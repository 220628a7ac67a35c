"""Request body of `POST /optimize`; the response is the stored `OptimizationPlan`."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from performance_agent.analysis.api import MAX_WINDOW_MINUTES
from performance_agent.fleet.schemas import INSTANCE_ID_PATTERN
from performance_agent.optimization.schemas import Constraints, Objective

__all__ = ("PLAN_ID_PATTERN", "OptimizeRequest")

PLAN_ID_PATTERN = r"^plan-[0-9a-f]{32}$"


class OptimizeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which instance to plan for and what to optimize; the window is analysed as `POST /analyze` would."""

    instance_id: Annotated[str, Meta(pattern=INSTANCE_ID_PATTERN, max_length=128, examples=["vllm-llama-0"])]
    objective: Objective = "balanced"
    constraints: Constraints = msgspec.field(default_factory=Constraints)
    window_minutes: Annotated[int, Meta(ge=1, le=MAX_WINDOW_MINUTES)] = 15
    model_name: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
