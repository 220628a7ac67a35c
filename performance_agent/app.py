"""`create_app()`: the only place that wires Litestar together."""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import TYPE_CHECKING

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.plugins.prometheus import PrometheusController

from performance_agent import __version__
from performance_agent.analysis.alerting import start_alerting
from performance_agent.analysis.controllers import AlertsController, AnalyzeController, SloController
from performance_agent.context import AgentContext
from performance_agent.edge import EdgeMiddleware
from performance_agent.errors import exception_handlers
from performance_agent.judgements.controllers import JudgementsController
from performance_agent.judgements.runtime import start_judgement_runner
from performance_agent.metrics.collector import start_background_collection
from performance_agent.metrics.controllers import CollectController, HistoryController, InstancesController
from performance_agent.observability import BUILD_INFO, add_request_id_header, configure_logging
from performance_agent.openapi_docs import build_openapi_config, docs_assets_router
from performance_agent.optimization.controllers import OptimizeController
from performance_agent.ratelimit import RateLimiter
from performance_agent.security import ApiKeyRing
from performance_agent.settings import Settings, load_settings
from performance_agent.storage.database import Database
from performance_agent.system.controllers import SystemController
from performance_agent.validation import StrictRequest
from performance_agent.workflows.controllers import WorkflowsController
from performance_agent.workflows.runtime import start_workflow_reconciler, wire_workflows

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


__all__ = ("create_app",)

logger = logging.getLogger("performance_agent.app")


class MetricsController(PrometheusController):
    """The agent's own Prometheus endpoint; open, like the health probes, and never rate limited."""

    path = "/metrics"
    openmetrics_format = False
    include_in_schema = False
    opt = {"public": True, "rate_limit": False}


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.log_level)
    key_ring = ApiKeyRing.from_settings(settings)
    if not key_ring.enabled:
        if settings.environment == "production":
            raise ValueError("PERF_AGENT_API_KEYS must be set when PERF_AGENT_ENVIRONMENT=production")
        logger.warning(
            "NO API KEYS CONFIGURED: the API is open to anyone who can reach it; set PERF_AGENT_API_KEYS",
        )
    context = AgentContext(settings=settings, database=Database(settings.database), key_ring=key_ring)
    wire_workflows(context)
    BUILD_INFO.labels(__version__).set(1)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await context.database.open()
        try:
            alerting = start_alerting(context)
            await alerting.restore()
            context.instance_deleted_hook = alerting.instance_deleted
            start_background_collection(context, after_scrape=alerting.after_scrape)
            start_workflow_reconciler(context)
            start_judgement_runner(context)
            # Everything built at start-up lives as long as the process: move it out of the
            # collector's way, so full collections stop pausing requests for tens of milliseconds.
            gc.collect()
            gc.freeze()
            context.ready = True
            logger.info("agent started", extra={"database": settings.database, "port": settings.port})
            yield
        finally:
            context.ready = False
            await context.loops.stop()
            await context.scrape_clients.aclose()
            await context.database.close()

    limiter = RateLimiter([(settings.rate_limit_per_minute, 60), (settings.rate_limit_per_hour, 3600)])
    edge = DefineMiddleware(EdgeMiddleware, limiter=limiter, ring=key_ring, trusted_proxies=settings.trusted_proxies)
    api = Router(
        path="/",
        route_handlers=[
            SystemController,
            InstancesController,
            CollectController,
            HistoryController,
            AnalyzeController,
            SloController,
            AlertsController,
            OptimizeController,
            WorkflowsController,
            JudgementsController,
        ],
        middleware=[edge],
    )
    return Litestar(
        route_handlers=[api, MetricsController, docs_assets_router()],
        dependencies={"agent": Provide(lambda: context, sync_to_thread=False, use_cache=True)},
        exception_handlers=exception_handlers(),
        before_send=[add_request_id_header],
        lifespan=[lifespan],
        request_class=StrictRequest,
        request_max_body_size=settings.max_body_bytes,
        cors_config=CORSConfig(allow_origins=settings.cors_origins, expose_headers=["X-Request-ID", "Retry-After"])
        if settings.cors_origins
        else None,
        openapi_config=build_openapi_config(__version__),
        state=State({"key_ring": key_ring, "context": context}),
        logging_config=None,
        debug=False,
    )
