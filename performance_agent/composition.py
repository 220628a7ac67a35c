"""The composition root: the one place that builds an agent's parts, once per app.

Why one place: every service is built here exactly once from settings parsed exactly once, so
a service keeps its caches for the life of the app (no module-global caches keyed by
repository), two apps in one process share nothing, and a reader finds every wiring decision
in one file. `app.create_app` turns the result into a Litestar app; tests and benchmarks call
`build_agent` directly when they want the parts without HTTP.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from performance_agent.analysis.alerting import AlertEvaluator, AlertmanagerFeed, alert_webhook
from performance_agent.analysis.config import detector_thresholds
from performance_agent.analysis.service import AnalysisService
from performance_agent.background import BackgroundLoops
from performance_agent.context import AgentContext, AgentMetrics
from performance_agent.engines.registry import ADAPTERS
from performance_agent.fleet.discovery import parse_discovery_rules
from performance_agent.fleet.instances import InstanceService
from performance_agent.fleet.slo import slo_defaults
from performance_agent.judgements.runner import JudgementRunner
from performance_agent.judgements.service import JudgementDefaults, JudgementService
from performance_agent.metrics.collection import CollectionService
from performance_agent.metrics.collector import Collector, RetentionPruner
from performance_agent.metrics.page_limits import PageLimits
from performance_agent.metrics.page_reader import ScrapedPageReader
from performance_agent.metrics.prometheus_discovery import PrometheusDiscovery
from performance_agent.metrics.prometheus_reader import PrometheusApi, PrometheusConfig
from performance_agent.metrics.prometheus_source import prometheus_headers
from performance_agent.metrics.service import CollectService
from performance_agent.optimization.service import OptimizationService
from performance_agent.outbound.alertmanager import AlertmanagerClient
from performance_agent.outbound.pinned import PinnedClients
from performance_agent.outbound.target_guard import parse_allowlist, system_resolver
from performance_agent.prometheus.service import PrometheusService
from performance_agent.replicas.coordinator import ReplicaCoordinator
from performance_agent.replicas.lease import Claimant, LeaseTiming, default_replica_id
from performance_agent.storage.factory import open_storage
from performance_agent.storage.health import StorageProbe
from performance_agent.workflows.effects import stored_plan_outcomes
from performance_agent.workflows.plans import stored_plan_lookup
from performance_agent.workflows.runtime import build_observer, build_reconciler, slo_latency_targets, workflow_defaults
from performance_agent.workflows.service import WorkflowService

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from performance_agent.analysis.thresholds import Thresholds
    from performance_agent.fleet.slo import SloTargets
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist
    from performance_agent.security import ApiKeyRing
    from performance_agent.settings import Settings

__all__ = ("ParsedSettings", "build_agent", "parse_settings")


@dataclass(frozen=True, slots=True)
class ParsedSettings:
    """The settings that are lists of strings in the environment, as the typed values the code reads."""

    slo_defaults: SloTargets
    thresholds: Thresholds
    scrape_allowlist: TargetAllowlist
    webhook_allowlist: TargetAllowlist
    scrape_header_env: frozenset[str]


def parse_settings(settings: Settings) -> ParsedSettings:
    return ParsedSettings(
        slo_defaults=slo_defaults(settings.slo_defaults),
        thresholds=detector_thresholds(settings.detector_thresholds),
        scrape_allowlist=parse_allowlist(settings.scrape_allowlist),
        webhook_allowlist=parse_allowlist(settings.webhook_allowlist, "PERF_AGENT_WEBHOOK_ALLOWLIST"),
        scrape_header_env=frozenset(settings.scrape_header_env),
    )


def build_agent(
    settings: Settings,
    key_ring: ApiKeyRing,
    *,
    resolver: Resolver = system_resolver,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> AgentContext:
    """Every part of one agent, wired; nothing is opened or started (see `AgentContext.start`).

    `resolver` (DNS for the target guard), `environ` (where scrape header secrets are read) and
    `clock` (the reconciler's time) are the seams tests substitute.
    """
    parsed = parse_settings(settings)
    storage = open_storage(settings.storage_url)
    metrics = AgentMetrics()
    clients = PinnedClients(max_connections=max(64, settings.scrape_concurrency * 2))
    environ = environ if environ is not None else os.environ
    prometheus_api = (
        None
        if settings.prometheus_url is None
        else PrometheusApi(
            PrometheusConfig(
                base_url=settings.prometheus_url,
                header_env=prometheus_headers(settings.prometheus_headers_env),
                ca_bundle=settings.prometheus_ca_bundle,
            ),
            clients=clients,
            allowlist=parsed.scrape_allowlist,
            resolver=resolver,
            max_bytes=settings.scrape_max_bytes,
            environ=environ,
        )
    )
    # One page reader per app, shared by every collection service: large pages are parsed in its
    # worker process (started and closed with the agent, see `AgentContext.start`).
    page_reader = ScrapedPageReader(
        limits=PageLimits(
            max_families=settings.scrape_max_families,
            max_series=settings.scrape_max_series,
            max_label_values=settings.scrape_max_label_values,
            max_label_value_length=settings.scrape_max_label_value_length,
        ),
        inline_max_bytes=settings.scrape_inline_max_bytes,
        budget_s=settings.scrape_parse_budget_s,
    )
    collection = CollectionService(
        instances=storage.instances,
        snapshots=storage.snapshots,
        clients=clients,
        allowlist=parsed.scrape_allowlist,
        resolver=resolver,
        max_bytes=settings.scrape_max_bytes,
        allowed_header_env=parsed.scrape_header_env,
        metrics=metrics.scrapes,
        environ=environ,
        reader=page_reader,
        prometheus=prometheus_api,
    )
    external_url = f"http://{settings.host}:{settings.port}"
    webhook = alert_webhook(
        settings.alert_webhook_url,
        clients=clients,
        allowlist=parsed.webhook_allowlist,
        resolver=resolver,
        receiver=settings.agent_name,
        external_url=external_url,
        metrics=metrics.alerts,
    )
    alertmanager = None
    # Prometheus keeps a firing alert valid for 4 x max(evaluation interval, resend delay of 1 min).
    valid_for_s = 4 * max(settings.scrape_interval_s, 60.0)
    if settings.alertmanager_url:
        alertmanager = AlertmanagerClient(
            settings.alertmanager_url,
            clients=clients,
            allowlist=parsed.webhook_allowlist,
            resolver=resolver,
            on_outcome=lambda outcome: metrics.alerts.alertmanager_posts.labels(outcome).inc(),
            resend_interval_s=valid_for_s / 4,
            # `alerting` is built next: the stored firing alerts, re-sent while evaluations stall.
            # The context is built below: only the leader re-sends the stored firing alerts.
            resend=lambda: context.alerts_to_resend(),
        )
    alerting = AlertEvaluator(
        snapshots=storage.snapshots,
        alerts=storage.alerts,
        defaults=parsed.slo_defaults,
        webhook=webhook,
        instances=storage.instances,
        metrics=metrics.alerts,
        alertmanager=None
        if alertmanager is None
        else AlertmanagerFeed(sink=alertmanager, valid_for_s=valid_for_s, external_url=external_url),
    )
    fleet = InstanceService(
        instances=storage.instances,
        allowlist=parsed.scrape_allowlist,
        allowed_header_env=parsed.scrape_header_env,
        slo_defaults=parsed.slo_defaults,
        active_workflows=storage.workflows,
        instance_deleted_hook=alerting.instance_deleted,
    )
    analysis = AnalysisService(
        instances=storage.instances,
        snapshots=storage.snapshots,
        collection=collection,
        thresholds=parsed.thresholds,
        slo_defaults=parsed.slo_defaults,
        period_s=settings.slo_period_hours * 3600.0,
        scrape_timeout_s=settings.scrape_timeout_s,
    )
    collector = Collector(
        instances=storage.instances,
        collection=collection,
        interval_s=settings.scrape_interval_s,
        concurrency=settings.scrape_concurrency,
        timeout_s=settings.scrape_timeout_s,
        after_scrape=alerting.after_scrape,
    )
    metrics.watch_instances(collector)
    discovery = None
    if prometheus_api is not None and settings.prometheus_discovery is not None:
        discovery = PrometheusDiscovery(
            api=prometheus_api,
            rules=parse_discovery_rules(settings.prometheus_discovery),
            instances=storage.instances,
            slo_defaults=parsed.slo_defaults,
            interval_s=settings.prometheus_discovery_interval_s,
            timeout_s=settings.scrape_timeout_s,
        )
    rollout_defaults = workflow_defaults(settings, parsed.webhook_allowlist)
    # Workflows and judgements read their cohorts the same way and judge goodput against the same targets.
    observer = build_observer(
        settings,
        storage=storage,
        clients=clients,
        scrape_allowlist=parsed.scrape_allowlist,
        resolver=resolver,
        scrape_metrics=metrics.scrapes,
        reader=page_reader,
        prometheus=prometheus_api,
        clock=clock,
    )
    slo_targets = slo_latency_targets(storage.instances, parsed.slo_defaults)
    replica_id = settings.replica_id or default_replica_id(socket.gethostname(), os.getpid(), secrets.token_hex(3))
    claimant = Claimant(replica_id=replica_id, ttl_s=settings.lease_ttl_s)
    # The leader starts and stops its loops through the context, built just below.
    coordinator = ReplicaCoordinator(
        replica_id=replica_id,
        leases=storage.leases,
        claims=(storage.workflows, storage.judgements),
        timing=LeaseTiming(settings.lease_ttl_s),
        on_elected=lambda: context.lead(),
        on_deposed=lambda: context.follow(),
        exclusive=storage.database.exclusive,
    )

    context = AgentContext(
        settings=settings,
        key_ring=key_ring,
        storage=storage,
        storage_probe=StorageProbe(storage.database),
        clients=clients,
        page_reader=page_reader,
        loops=BackgroundLoops(),
        leader_loops=BackgroundLoops(),
        coordinator=coordinator,
        metrics=metrics,
        fleet=fleet,
        collection=collection,
        collect=CollectService(
            fleet=fleet,
            instances=storage.instances,
            snapshots=storage.snapshots,
            collection=collection,
            default_timeout_s=settings.scrape_timeout_s,
        ),
        analysis=analysis,
        optimization=OptimizationService(
            analysis=analysis, plans=storage.plans, outcomes=stored_plan_outcomes(storage.workflows)
        ),
        workflows=WorkflowService(
            workflows=storage.workflows,
            instances=storage.instances,
            defaults=rollout_defaults,
            plans=stored_plan_lookup(storage.plans),
            metrics=metrics.workflows,
            clock=clock,
        ),
        alerting=alerting,
        alert_webhook=webhook,
        alertmanager=alertmanager,
        prometheus=PrometheusService(
            instances=storage.instances,
            slo_defaults=parsed.slo_defaults,
            series={engine: adapter.objective_series for engine, adapter in ADAPTERS.items()},
        ),
        collector=collector,
        pruner=RetentionPruner(
            storage.snapshots, settings.history_retention_hours, max_bytes=settings.history_max_bytes
        ),
        reconciler=build_reconciler(
            settings,
            storage=storage,
            observer=observer,
            clients=clients,
            webhook_allowlist=parsed.webhook_allowlist,
            resolver=resolver,
            metrics=metrics.workflows,
            slo_targets=slo_targets,
            claimant=claimant,
            clock=clock,
        ),
        judgements=JudgementService(
            judgements=storage.judgements,
            instances=storage.instances,
            defaults=JudgementDefaults.of_workflows(rollout_defaults),
            clock=clock,
        ),
        # Ticks as often as the reconciler: a judgement's windows are as long as a workflow's.
        judgement_runner=JudgementRunner(
            judgements=storage.judgements,
            observer=observer,
            clock=clock,
            claimant=claimant,
            slo_targets=slo_targets,
            tick_s=settings.workflow_tick_s,
        ),
        discovery=discovery,
    )
    return context
