"""How the workflow parts fit into a running agent: the reconciler and what it drives.

Called by the composition root, so the workflow package owns how its parts fit together while
`composition.build_agent` stays the one place that assembles the agent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal, Protocol

from performance_agent.clock import utc
from performance_agent.fleet.slo import effective_targets
from performance_agent.metrics.collection import CollectionService, ScrapeMetrics
from performance_agent.outbound.webhooks import HttpPoster
from performance_agent.workflows.actuators import SimulatorActuator, WebhookActuator
from performance_agent.workflows.effects import slo_limits
from performance_agent.workflows.observer import CohortObserver
from performance_agent.workflows.outbox import OutboxDriver
from performance_agent.workflows.policy import Guardrails, MonitorPolicy
from performance_agent.workflows.reconciler import Reconciler
from performance_agent.workflows.schemas import ActuatorSpec
from performance_agent.workflows.validation import CreateDefaults

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.fleet.slo import SloTargets
    from performance_agent.metrics.page_reader import ScrapedPageReader
    from performance_agent.metrics.prometheus_reader import PrometheusApi
    from performance_agent.outbound.pinned import PinnedClients
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist
    from performance_agent.replicas.lease import Claimant
    from performance_agent.workflows.actuators import Actuator
    from performance_agent.workflows.observability import WorkflowMetrics
    from performance_agent.workflows.ports import RolloutRepositories

__all__ = ("RolloutSettings", "build_observer", "build_reconciler", "slo_latency_targets", "workflow_defaults")


class RolloutSettings(Protocol):
    """The settings the rollout parts read (`Settings` has them); a protocol, so workflows/ imports no settings."""

    @property
    def scrape_max_bytes(self) -> int: ...
    @property
    def scrape_header_env(self) -> list[str]: ...
    @property
    def scrape_timeout_s(self) -> float: ...
    @property
    def webhook_secret(self) -> str | None: ...
    @property
    def webhook_timeout_s(self) -> float: ...
    @property
    def webhook_retries(self) -> int: ...
    @property
    def webhook_backoff_s(self) -> float: ...
    @property
    def workflow_tick_s(self) -> float: ...
    @property
    def workflow_max_reading_age_s(self) -> float: ...
    @property
    def scrape_background(self) -> bool: ...
    @property
    def workflow_actuator_type(self) -> Literal["webhook", "simulator"]: ...
    @property
    def workflow_actuator_url(self) -> str | None: ...
    @property
    def workflow_min_samples(self) -> int: ...
    @property
    def workflow_max_ttft_p99_increase(self) -> float: ...
    @property
    def workflow_max_itl_p99_increase(self) -> float: ...
    @property
    def workflow_max_e2e_p99_increase(self) -> float: ...
    @property
    def workflow_max_error_rate(self) -> float: ...
    @property
    def workflow_max_preemptions_per_s(self) -> float | None: ...
    @property
    def workflow_consecutive_failures(self) -> int: ...
    @property
    def workflow_on_canary_scrape_error(self) -> Literal["fail", "inconclusive"]: ...


def slo_latency_targets(
    instances: InstanceRepository, defaults: SloTargets
) -> Callable[[Sequence[str]], Awaitable[dict[str, float]]]:
    """Goodput targets of a workflow: the first instance's SLO latency targets (or the configured defaults).

    The same per-request limits the measured effects use (`workflows.effects.slo_limits`).
    """

    async def targets(instance_ids: Sequence[str]) -> dict[str, float]:
        stored = await instances.get(instance_ids[0]) if instance_ids else None
        return slo_limits(defaults if stored is None else effective_targets(stored, defaults)[0])

    return targets


def build_observer(
    settings: RolloutSettings,
    *,
    storage: RolloutRepositories,
    clients: PinnedClients,
    scrape_allowlist: TargetAllowlist,
    resolver: Resolver,
    scrape_metrics: ScrapeMetrics,
    reader: ScrapedPageReader,
    prometheus: PrometheusApi | None = None,
    clock: Callable[[], float] = time.time,
) -> CohortObserver:
    """How workflows and judgements read their cohorts; `clock` stamps the scrapes it takes.

    `prometheus` must be the agent's own API client: instances with source `prometheus` are read
    through it for baselines and gates exactly as the collector reads them.
    """
    collection = CollectionService(
        instances=storage.instances,
        snapshots=storage.snapshots,
        clients=clients,
        allowlist=scrape_allowlist,
        resolver=resolver,
        max_bytes=settings.scrape_max_bytes,
        allowed_header_env=frozenset(settings.scrape_header_env),
        metrics=scrape_metrics,
        clock=lambda: utc(clock()),
        reader=reader,
        prometheus=prometheus,
    )
    return CohortObserver(
        instances=storage.instances,
        snapshots=storage.snapshots,
        collection=collection,
        timeout_s=settings.scrape_timeout_s,
        max_reading_age_s=settings.workflow_max_reading_age_s if settings.scrape_background else 0.0,
    )


def build_reconciler(
    settings: RolloutSettings,
    *,
    storage: RolloutRepositories,
    observer: CohortObserver,
    clients: PinnedClients,
    webhook_allowlist: TargetAllowlist,
    resolver: Resolver,
    metrics: WorkflowMetrics,
    slo_targets: Callable[[Sequence[str]], Awaitable[dict[str, float]]],
    claimant: Claimant,
    clock: Callable[[], float] = time.time,
) -> Reconciler:
    """A reconciler on the agent's storage and clients, reading cohorts through `observer`."""
    poster = HttpPoster(clients, webhook_allowlist, resolver, settings.webhook_timeout_s)
    actuators: dict[str, Actuator] = {
        "webhook": WebhookActuator(poster, settings.webhook_secret, clock),
        "simulator": SimulatorActuator(poster, storage.instances),
    }
    outbox = OutboxDriver(
        storage.workflows,
        actuators,
        retries=settings.webhook_retries,
        backoff_s=settings.webhook_backoff_s,
        claimant=claimant,
    )
    return Reconciler(
        workflows=storage.workflows,
        observer=observer,
        outbox=outbox,
        metrics=metrics,
        clock=clock,
        claimant=claimant,
        tick_s=settings.workflow_tick_s,
        slo_targets=slo_targets,
    )


def workflow_defaults(settings: RolloutSettings, webhook_allowlist: TargetAllowlist) -> CreateDefaults:
    """What a create body may omit, from the settings (parsed once by the composition root)."""
    url = settings.workflow_actuator_url
    actuator = None
    if url is not None or settings.workflow_actuator_type == "simulator":
        actuator = ActuatorSpec(type=settings.workflow_actuator_type, url=url)
    return CreateDefaults(
        guardrails=Guardrails(
            min_samples=settings.workflow_min_samples,
            max_ttft_p99_increase=settings.workflow_max_ttft_p99_increase,
            max_itl_p99_increase=settings.workflow_max_itl_p99_increase,
            max_e2e_p99_increase=settings.workflow_max_e2e_p99_increase,
            max_error_rate=settings.workflow_max_error_rate,
            max_preemptions_per_s=settings.workflow_max_preemptions_per_s,
            consecutive_failures=settings.workflow_consecutive_failures,
            on_canary_scrape_error=settings.workflow_on_canary_scrape_error,
        ),
        monitor=MonitorPolicy(),
        actuator=actuator,
        webhook_allowlist=webhook_allowlist,
    )
