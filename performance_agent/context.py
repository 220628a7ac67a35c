"""The agent's runtime parts, built once per app by `composition.build_agent` and shared by everyone.

Controllers receive the ready services through dependency injection (each package declares its
own `NamedDependency`); the system endpoints and the lifespan receive this whole context. It is
a plain class on purpose: Litestar validates injected values, and a dataclass would be
introspected (and copied) by msgspec on every request.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from litestar.di import NamedDependency
from litestar.params import SkipValidation

from performance_agent.analysis.alerting import AlertMetrics
from performance_agent.metrics.collection import ScrapeMetrics
from performance_agent.metrics.collector import InstanceStatusCollector
from performance_agent.observability import RequestMetrics, agent_registry
from performance_agent.workflows.observability import WorkflowMetrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from performance_agent.analysis.alerting import AlertEvaluator, AlertWebhook
    from performance_agent.analysis.service import AnalysisService
    from performance_agent.background import BackgroundLoops
    from performance_agent.fleet.instances import InstanceService
    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.judgements.runner import JudgementRunner
    from performance_agent.judgements.service import JudgementService
    from performance_agent.metrics.collection import CollectionService
    from performance_agent.metrics.collector import Collector, RetentionPruner
    from performance_agent.metrics.page_reader import ScrapedPageReader
    from performance_agent.metrics.ports import SnapshotRepository
    from performance_agent.metrics.prometheus_discovery import PrometheusDiscovery
    from performance_agent.metrics.service import CollectService
    from performance_agent.optimization.service import OptimizationService
    from performance_agent.outbound.alertmanager import AlertmanagerClient
    from performance_agent.outbound.pinned import PinnedClients
    from performance_agent.prometheus.service import PrometheusService
    from performance_agent.replicas.coordinator import ReplicaCoordinator
    from performance_agent.security import ApiKeyRing
    from performance_agent.settings import Settings
    from performance_agent.storage.factory import Storage
    from performance_agent.storage.health import StorageProbe
    from performance_agent.storage.sql import SqlDatabase
    from performance_agent.workflows.reconciler import Reconciler
    from performance_agent.workflows.service import WorkflowService

__all__ = ("AgentContext", "AgentDependency", "AgentMetrics")


class AgentMetrics:
    """The agent's own metrics: one registry per app, each domain's series registered on it.

    Figures that are state (instances by status) are collectors that read the state at scrape
    time; figures that are events (requests, scrapes, transitions) are counted where they happen.
    """

    def __init__(self) -> None:
        self.registry: CollectorRegistry = agent_registry()
        self.requests = RequestMetrics(self.registry)
        self.scrapes = ScrapeMetrics(self.registry)
        self.alerts = AlertMetrics(self.registry)
        self.workflows = WorkflowMetrics(self.registry)

    def watch_instances(self, collector: Collector) -> None:
        self.registry.register(InstanceStatusCollector(collector))


class AgentContext:
    """Everything one agent is made of; see `composition.build_agent` for how the parts fit."""

    def __init__(
        self,
        *,
        settings: Settings,
        key_ring: ApiKeyRing,
        storage: Storage,
        storage_probe: StorageProbe,
        clients: PinnedClients,
        page_reader: ScrapedPageReader,
        loops: BackgroundLoops,
        leader_loops: BackgroundLoops,
        coordinator: ReplicaCoordinator,
        metrics: AgentMetrics,
        fleet: InstanceService,
        collection: CollectionService,
        collect: CollectService,
        analysis: AnalysisService,
        optimization: OptimizationService,
        workflows: WorkflowService,
        judgements: JudgementService,
        alerting: AlertEvaluator,
        alert_webhook: AlertWebhook | None,
        alertmanager: AlertmanagerClient | None,
        prometheus: PrometheusService,
        collector: Collector,
        pruner: RetentionPruner,
        reconciler: Reconciler,
        judgement_runner: JudgementRunner,
        discovery: PrometheusDiscovery | None = None,
    ) -> None:
        self.settings = settings
        self.key_ring = key_ring
        self.storage = storage
        #: The health endpoints' storage probe (its last passing answer is reused for a second).
        self.storage_probe = storage_probe
        self.clients = clients
        #: Parses large pages off the event loop; started and closed with the agent.
        self.page_reader = page_reader
        self.loops = loops
        #: The loops only the leader replica runs (collection, discovery, history retention).
        self.leader_loops = leader_loops
        #: Takes and renews the leader lease, and keeps this replica's claims alive.
        self.coordinator = coordinator
        #: The agent's own Prometheus metrics (`GET /metrics`); one registry per app.
        self.metrics = metrics
        self.fleet = fleet
        self.collection = collection
        self.collect = collect
        self.analysis = analysis
        self.optimization = optimization
        self.workflows = workflows
        self.judgements = judgements
        self.alerting = alerting
        self.alert_webhook = alert_webhook
        self.alertmanager = alertmanager
        self.prometheus = prometheus
        self.collector = collector
        self.pruner = pruner
        self.reconciler = reconciler
        self.judgement_runner = judgement_runner
        #: Registers the servers Prometheus scrapes (None: PERF_AGENT_PROMETHEUS_DISCOVERY unset).
        self.discovery = discovery
        self.started_monotonic = time.monotonic()
        self.ready = False

    @property
    def database(self) -> SqlDatabase:
        return self.storage.database

    @property
    def instances(self) -> InstanceRepository:
        return self.storage.instances

    @property
    def snapshots(self) -> SnapshotRepository:
        return self.storage.snapshots

    @property
    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_monotonic, 3)

    async def start(self) -> None:
        """Open storage and start the background loops (from the app's lifespan).

        Every replica sends queued notifications, reconciles workflows and judges judgements
        (claiming each row it moves); the leader-only loops start when this replica is elected,
        which a replica alone on its database is at once.
        """
        await self.storage.open()
        self.page_reader.start()
        settings = self.settings
        if self.alert_webhook is not None:
            self.loops.start("alert-webhook", self.alert_webhook.run, stale_after_s=60.0)
        if self.alertmanager is not None:
            self.loops.start("alertmanager", self.alertmanager.run, stale_after_s=60.0)
        await self.coordinator.start()
        self.loops.start(
            "replica-lease", self.coordinator.run, stale_after_s=max(30.0, self.coordinator.timing.ttl_s * 3)
        )
        self.loops.start(
            "workflow-reconciler", self.reconciler.run, stale_after_s=max(60.0, settings.workflow_tick_s * 10)
        )
        self.loops.start(
            "judgement-runner", self.judgement_runner.run, stale_after_s=max(60.0, settings.workflow_tick_s * 10)
        )

    async def lead(self) -> None:
        """This replica was elected: restore the firing alerts and start collection, discovery and retention."""
        settings = self.settings
        await self.alerting.restore()
        if settings.scrape_background:
            self.leader_loops.start(
                "collector", self.collector.run, stale_after_s=max(30.0, self.collector.tick_s * 10)
            )
        if self.discovery is not None:
            self.leader_loops.start(
                "prometheus-discovery", self.discovery.run, stale_after_s=max(60.0, self.discovery.interval_s * 3)
            )
        self.leader_loops.start("history-retention", self.pruner.run, stale_after_s=self.pruner.interval_s * 3)

    async def alerts_to_resend(self) -> dict[str, bytes]:
        """The stored firing alerts for Alertmanager's timed resend: only the leader evaluates alerts and sends them."""
        return await self.alerting.firing_for_alertmanager() if self.coordinator.is_leader else {}

    async def follow(self) -> None:
        """This replica lost the lease: stop the leader loops and drop what only they keep current.

        Alert time lines are re-read if it leads again; the instance counts of `/metrics` are the
        leader's to export (a follower's would go stale).
        """
        await self.leader_loops.stop()
        self.alerting.forget_all()
        self.collector.status_counts = None

    async def stop(self) -> None:
        """Stop the loops, then close the clients and storage they use (from the app's lifespan)."""
        self.ready = False
        await self.loops.stop()
        await self.coordinator.stop()
        await self.clients.aclose()
        self.page_reader.close()
        await self.storage.close()


#: How handlers ask for the context. `SkipValidation`: Litestar would otherwise run the object
#: through msgspec's converter on every request (measured: a third of the health endpoint's time).
AgentDependency = NamedDependency[SkipValidation[AgentContext]]
