"""What this build supports, read from the code's own registries so the answer cannot drift."""

from __future__ import annotations

from performance_agent import __version__
from performance_agent.analysis.detectors import DETECTORS
from performance_agent.analysis.schemas import OPTIMIZATION_TYPES
from performance_agent.engines.registry import SUPPORTED_ENGINES
from performance_agent.system.schemas import Capabilities
from performance_agent.workflows.machine import UserAction, WorkflowStatus

__all__ = ("capabilities",)


def capabilities() -> Capabilities:
    return Capabilities(
        version=__version__,
        engines=list(SUPPORTED_ENGINES),
        optimization_types=list(OPTIMIZATION_TYPES),
        bottleneck_types=list(DETECTORS),
        workflow_statuses=[status.value for status in WorkflowStatus],
        workflow_actions=sorted(action.value for action in UserAction),
    )
