"""The agent's runtime parts, built once per app and shared by controllers and background loops.

Controllers receive it through dependency injection (`NamedDependency[AgentContext]`), so no
module keeps global state and tests can build as many independent agents as they like. It is
a plain class on purpose: Litestar validates injected values, and a dataclass would be
introspected (and copied) by msgspec on every request.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from litestar.di import NamedDependency
from litestar.params import SkipValidation

from performance_agent.background import BackgroundLoops
from performance_agent.metrics.scraper import ScrapeClients
from performance_agent.outbound.target_guard import parse_allowlist, system_resolver
from performance_agent.storage.instances import SqliteInstanceRepository
from performance_agent.storage.snapshots import SqliteSnapshotRepository

if TYPE_CHECKING:
    from performance_agent.fleet.instances import ActiveWorkflowFinder, InstanceDeletedHook
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist
    from performance_agent.security import ApiKeyRing
    from performance_agent.settings import Settings
    from performance_agent.storage.database import Database
    from performance_agent.storage.instances import InstanceRepository
    from performance_agent.storage.snapshots import SnapshotRepository

__all__ = ("AgentContext", "AgentDependency")


class AgentContext:
    def __init__(self, settings: Settings, database: Database, key_ring: ApiKeyRing) -> None:
        self.settings = settings
        self.database = database
        self.key_ring = key_ring
        self.loops = BackgroundLoops()
        self.started_monotonic = time.monotonic()
        self.ready = False
        # Metrics collection: repositories, the pooled scrape clients (closed by the lifespan),
        # the parsed allowlist, and the resolver the target guard uses (tests substitute one).
        self.instances: InstanceRepository = SqliteInstanceRepository(database)
        self.snapshots: SnapshotRepository = SqliteSnapshotRepository(database)
        self.scrape_clients = ScrapeClients(max_connections=max(64, settings.scrape_concurrency * 2))
        self.scrape_allowlist: TargetAllowlist = parse_allowlist(settings.scrape_allowlist)
        self.scrape_resolver: Resolver = system_resolver
        #: Set by the workflow store: DELETE /instances/{id} asks it whether a workflow is active.
        self.active_workflow_finder: ActiveWorkflowFinder | None = None
        #: Set by the lifespan: DELETE /instances/{id} calls it once the registration is gone
        #: (alerting resolves the instance's firing alerts).
        self.instance_deleted_hook: InstanceDeletedHook | None = None

    @property
    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_monotonic, 3)


#: How handlers ask for the context. `SkipValidation`: Litestar would otherwise run the object
#: through msgspec's converter on every request (measured: a third of the health endpoint's time).
AgentDependency = NamedDependency[SkipValidation[AgentContext]]
