"""What this build supports, read from the code's own registries so the answer cannot drift."""

from __future__ import annotations

from performance_agent import __version__
from performance_agent.system.schemas import Capabilities
from performance_agent.workflows.machine import UserAction, WorkflowStatus

__all__ = ("capabilities",)


def capabilities() -> Capabilities:
    return Capabilities(
        version=__version__,
        engines=[],
        optimization_types=[],
        bottleneck_types=[],
        workflow_statuses=[status.value for status in WorkflowStatus],
        workflow_actions=sorted(action.value for action in UserAction),
        actuator_types=[],
        features=[],
    )
