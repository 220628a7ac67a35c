"""Wiring the workflow parts into a running agent: the instance-delete guard and the reconciler loop.

Called by `app.create_app` (wiring) and its lifespan (the loop), so the app module stays the only
place that assembles the agent while the workflow package owns how its parts fit together.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from performance_agent.metrics.collection import CollectionService
from performance_agent.storage.workflows import SqliteWorkflowRepository
from performance_agent.workflows.actuators import HttpPoster, SimulatorActuator, WebhookActuator
from performance_agent.workflows.observer import CohortObserver
from performance_agent.workflows.outbox import OutboxDriver
from performance_agent.workflows.reconciler import Reconciler
from performance_agent.workflows.views import utc

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.context import AgentContext
    from performance_agent.workflows.actuators import Actuator

__all__ = ("build_reconciler", "start_workflow_reconciler", "wire_workflows")


def wire_workflows(agent: AgentContext) -> None:
    """DELETE /instances/{id} answers 409 `workflow_conflict` while the instance is in an active workflow."""
    agent.active_workflow_finder = SqliteWorkflowRepository(agent.database).active_workflow_of


def build_reconciler(agent: AgentContext, clock: Callable[[], float] = time.time) -> Reconciler:
    """A reconciler on the agent's storage and clients; `clock` also stamps the scrapes it takes."""
    settings = agent.settings
    from performance_agent.outbound.target_guard import parse_allowlist

    workflows = SqliteWorkflowRepository(agent.database)
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
    observer = CohortObserver(
        instances=agent.instances,
        snapshots=agent.snapshots,
        collection=collection,
        timeout_s=settings.scrape_timeout_s,
    )
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
        workflows=workflows, observer=observer, outbox=outbox, clock=clock, tick_s=settings.workflow_tick_s
    )


def start_workflow_reconciler(agent: AgentContext) -> Reconciler:
    reconciler = build_reconciler(agent)
    agent.loops.start(
        "workflow-reconciler", reconciler.run, stale_after_s=max(60.0, agent.settings.workflow_tick_s * 10)
    )
    return reconciler
