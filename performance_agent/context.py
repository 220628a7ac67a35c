"""The agent's runtime parts, built once per app and shared by controllers and background loops.

Controllers receive it through dependency injection (`NamedDependency[AgentContext]`), so no
module keeps global state and tests can build as many independent agents as they like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from performance_agent.background import BackgroundLoops
from performance_agent.security import ApiKeyRing
from performance_agent.settings import Settings
from performance_agent.storage.database import Database

__all__ = ("AgentContext",)


@dataclass(slots=True)
class AgentContext:
    settings: Settings
    database: Database
    key_ring: ApiKeyRing
    loops: BackgroundLoops = field(default_factory=BackgroundLoops)
    started_monotonic: float = field(default_factory=time.monotonic)
    ready: bool = False

    @property
    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_monotonic, 3)
