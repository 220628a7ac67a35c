"""Wiring the workflow parts into a running agent: the instance-delete guard and the reconciler loop.

Called by `app.create_app` (wiring) and its lifespan (the loop), so the app module stays the only
place that assembles the agent while the workflow package owns how its parts fit together.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from performance_agent.analysis.config import slo_defaults
from performance_agent.analysis.service import effective_targets
from performance_agent.metrics.collection import CollectionService
from performance_agent.storage.workflows import SqliteWorkflowRepository
from performance_agent.workflows.actuators import HttpPoster, SimulatorActuator, WebhookActuator
from performance_agent.workflows.effects import slo_limits
from performance_agent.workflows.observer import CohortObserver
from performance_agent.workflows.outbox import OutboxDriver
from performance_agent.workflows.reconciler import Reconciler
from performance_agent.workflows.views import utc

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from performance_agent.context import AgentContext
    from performance_agent.workflows.actuators import Actuator

__all__ = (
    "build_observer",
    "build_reconciler",
    "slo_latency_targets",
    "start_workflow_reconciler",
    "wire_workflows",
)


def wire_workflows(agent: AgentContext) -> None:
    """DELETE /instances/{id} answers 409 `workflow_conflict` while the instance is in an active workflow."""
    agent.active_workflow_finder = SqliteWorkflowRepository(agent.database).active_workflow_of


def slo_latency_targets(agent: AgentContext) -> Callable[[Sequence[str]], Awaitable[dict[str, float]]]:
    """Goodput targets of a workflow: the first instance's SLO latency targets (or the configured defaults).

    The same per-request limits the measured effects use (`workflows.effects.slo_limits`).
    """
    defaults = slo_defaults(agent.settings.slo_defaults)

    async def targets(instance_ids: Sequence[str]) -> dict[str, float]:
        stored = await agent.instances.get(instance_ids[0]) if instance_ids else None
        return slo_limits(defaults if stored is None else effective_targets(stored, defaults)[0])

    return targets


def build_observer(agent: AgentContext, clock: Callable[[], float] = time.time) -> CohortObserver:
    """How workflows and judgements read their cohorts; `clock` stamps the scrapes it takes."""
    settings = agent.settings
    collection = CollectionService(
        instances=agent.instances,
        snapshots=agent.snapshots,
        clients=agent.scrape_clients,
        allowlist=agent.scrape_allowlist,
        resolver=agent.scrape_resolver,
        max_bytes=settings.scrape_max_bytes,
        allowed_header_env=frozenset(settings.scrape_header_env),
        clock=lambda: utc(clock()),
    )
    return CohortObserver(
        instances=agent.instances,
        snapshots=agent.snapshots,
        collection=collection,
        timeout_s=settings.scrape_timeout_s,
        max_reading_age_s=settings.workflow_max_reading_age_s if settings.scrape_background else 0.0,
    )


def build_reconciler(agent: AgentContext, clock: Callable[[], float] = time.time) -> Reconciler:
    """A reconciler on the agent's storage and clients; `clock` also stamps the scrapes it takes."""
    settings = agent.settings
    from performance_agent.outbound.target_guard import parse_allowlist

    workflows = SqliteWorkflowRepository(agent.database)
    observer = build_observer(agent, clock)
    poster = HttpPoster(
        agent.scrape_clients,
        parse_allowlist(settings.webhook_allowlist, "PERF_AGENT_WEBHOOK_ALLOWLIST"),
        agent.scrape_resolver,
        settings.webhook_timeout_s,
    )
    actuators: dict[str, Actuator] = {
        "webhook": WebhookActuator(poster, settings.webhook_secret, clock),
        "simulator": SimulatorActuator(poster, agent.instances),
    }
    outbox = OutboxDriver(workflows, actuators, retries=settings.webhook_retries, backoff_s=settings.webhook_backoff_s)
    return Reconciler(
        workflows=workflows,
        observer=observer,
        outbox=outbox,
        clock=clock,
        tick_s=settings.workflow_tick_s,
        slo_targets=slo_latency_targets(agent),
    )


def start_workflow_reconciler(agent: AgentContext) -> Reconciler:
    reconciler = build_reconciler(agent)
    agent.loops.start(
        "workflow-reconciler", reconciler.run, stale_after_s=max(60.0, agent.settings.workflow_tick_s * 10)
    )
    return reconciler
