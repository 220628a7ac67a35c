"""`create_app()`: the only place that wires Litestar together, around the agent `build_agent` composes."""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import TYPE_CHECKING

from litestar import Controller, Litestar, Response, Router, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from performance_agent import __version__
from performance_agent.analysis.controllers import AlertsController, AnalyzeController
from performance_agent.composition import build_agent
from performance_agent.context import AgentContext, AgentDependency
from performance_agent.edge import install_edge
from performance_agent.errors import exception_handlers
from performance_agent.fleet.controllers import InstancesController, SloController
from performance_agent.judgements.controllers import JudgementsController
from performance_agent.metrics.controllers import CollectController, HistoryController
from performance_agent.observability import configure_logging
from performance_agent.openapi_docs import build_openapi_config, docs_assets_router
from performance_agent.optimization.controllers import OptimizeController
from performance_agent.outbound.target_guard import system_resolver
from performance_agent.prometheus.controllers import PrometheusController
from performance_agent.ratelimit import RateLimiter
from performance_agent.security import ApiKeyRing, access_check
from performance_agent.settings import Settings, load_settings
from performance_agent.system.controllers import ProbesController, SystemController
from performance_agent.validation import StrictRequest
from performance_agent.workflows.controllers import WorkflowsController

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from performance_agent.outbound.target_guard import Resolver


__all__ = ("create_app",)

logger = logging.getLogger("performance_agent.app")


@get(
    "/metrics",
    include_in_schema=False,
    opt={"public": True, "rate_limit": False},
    sync_to_thread=False,
)
def agent_metrics(agent: AgentDependency) -> Response[bytes]:
    """The agent's own Prometheus endpoint (this app's registry); open, like the health probes, never rate limited."""
    return Response(generate_latest(agent.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(
    settings: Settings | None = None,
    *,
    resolver: Resolver = system_resolver,
    environ: Mapping[str, str] | None = None,
) -> Litestar:
    """The Litestar app around one agent built by the composition root.

    `resolver` and `environ` are the seams tests substitute: DNS for the target guard, and where
    scrape header secrets are read.
    """
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.log_level)
    key_ring = ApiKeyRing.from_settings(settings)
    if not key_ring.enabled:
        if settings.environment == "production":
            raise ValueError("PERF_AGENT_API_KEYS must be set when PERF_AGENT_ENVIRONMENT=production")
        logger.warning(
            "NO API KEYS CONFIGURED: the API is open to anyone who can reach it; set PERF_AGENT_API_KEYS",
        )
    context = build_agent(settings, key_ring, resolver=resolver, environ=environ)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            await context.start()
            # Everything built at start-up lives as long as the process: move it out of the
            # collector's way, so full collections stop pausing requests for tens of milliseconds.
            gc.collect()
            gc.freeze()
            context.ready = True
            logger.info("agent started", extra={"database": context.database.description, "port": settings.port})
            yield
        finally:
            await context.stop()

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
            PrometheusController,
        ],
        before_request=access_check(key_ring),
    )
    app = Litestar(
        route_handlers=[api, *_open_routes(ProbesController, agent_metrics), docs_assets_router()],
        dependencies=_dependencies(context),
        exception_handlers=exception_handlers(),
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
    limiter = RateLimiter(
        [(settings.rate_limit_per_minute, 60), (settings.rate_limit_per_hour, 3600)],
        max_clients=settings.rate_limit_max_clients,
    )
    return install_edge(
        app,
        limiter=limiter,
        ring=key_ring,
        trusted_proxies=settings.trusted_proxies,
        metrics=context.metrics.requests,
    )


def _open_routes(*handlers: type[Controller] | HTTPRouteHandler) -> list[type[Controller] | HTTPRouteHandler]:
    """Routes served outside the API key hook, each checked to be marked `opt={"public": True}`.

    The probes and `/metrics` are open by design and called constantly; outside the router that
    carries `access_check` they skip its per-request call (a seventh of the health endpoint's
    cost). The check keeps a handler that needs a key from landing here by mistake.
    """
    for handler in handlers:
        routes = (
            [v for v in vars(handler).values() if isinstance(v, HTTPRouteHandler)]
            if isinstance(handler, type)
            else [handler]
        )
        closed = [route.handler_name or str(route) for route in routes if not route.opt.get("public")]
        if closed:
            raise ValueError(f"routes outside the API key check must be public: {', '.join(closed)}")
    return list(handlers)


def _dependencies(context: AgentContext) -> dict[str, Provide]:
    """Each controller parameter name and the ready part it receives (built once, by `build_agent`)."""
    parts: dict[str, object] = {
        "agent": context,
        "key_ring": context.key_ring,
        "fleet": context.fleet,
        "collect_service": context.collect,
        "analysis": context.analysis,
        "alerts": context.storage.alerts,
        "optimization": context.optimization,
        "workflows": context.workflows,
        "judgements": context.judgements,
        "prometheus": context.prometheus,
    }
    return {name: Provide(_constant(part), sync_to_thread=False, use_cache=True) for name, part in parts.items()}


def _constant(part: object) -> Callable[[], object]:
    def provide() -> object:
        return part

    return provide
