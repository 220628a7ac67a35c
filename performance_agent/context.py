"""The agent's runtime parts, built once per app and shared by controllers and background loops.

Controllers receive it through dependency injection (`NamedDependency[AgentContext]`), so no
module keeps global state and tests can build as many independent agents as they like. It is
a plain class on purpose: Litestar validates injected values, and a dataclass would be
introspected (and copied) by msgspec on every request.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from performance_agent.background import BackgroundLoops

if TYPE_CHECKING:
    from performance_agent.security import ApiKeyRing
    from performance_agent.settings import Settings
    from performance_agent.storage.database import Database

__all__ = ("AgentContext",)


class AgentContext:
    def __init__(self, settings: Settings, database: Database, key_ring: ApiKeyRing) -> None:
        self.settings = settings
        self.database = database
        self.key_ring = key_ring
        self.loops = BackgroundLoops()
        self.started_monotonic = time.monotonic()
        self.ready = False

    @property
    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_monotonic, 3)
