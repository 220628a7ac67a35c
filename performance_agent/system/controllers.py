"""Health, readiness, configuration and capabilities."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from performance_agent import __version__
from performance_agent.context import AgentContext
from performance_agent.errors import error_responses
from performance_agent.system.capabilities import capabilities
from performance_agent.system.schemas import Capabilities, ConfigReport, DetailedHealth, Health, Readiness
from performance_agent.system.service import config_report, detailed_health, probe_storage

__all__ = ("SystemController",)

_OPEN = {"public": True, "rate_limit": False}


class SystemController(Controller):
    path = "/api/v1"
    tags = ["System"]

    @get("/health", opt=_OPEN, security=[], operation_id="GetHealth", summary="Liveness: the process answers")
    async def health(self, agent: NamedDependency[AgentContext]) -> Health:
        """Cheap liveness probe; never touches storage, never rate limited, needs no key."""
        return Health(status="ok", version=__version__, uptime_s=agent.uptime_s)

    @get(
        "/health/detailed",
        opt=_OPEN,
        security=[],
        operation_id="GetDetailedHealth",
        summary="Each dependency with its status and latency",
        responses={503: ResponseSpec(data_container=DetailedHealth, description="Unhealthy: storage failed.")},
    )
    async def detailed(self, agent: NamedDependency[AgentContext]) -> Response[DetailedHealth]:
        """Storage write/read probe and background loop heartbeats; 503 when unhealthy."""
        report = await detailed_health(agent)
        return Response(report, status_code=503 if report.status == "unhealthy" else 200)

    @get(
        "/health/ready",
        opt=_OPEN,
        security=[],
        operation_id="GetReadiness",
        summary="Readiness: start-up finished and storage answers",
        responses={503: ResponseSpec(data_container=Readiness, description="Not ready yet, or storage fails.")},
    )
    async def ready(self, agent: NamedDependency[AgentContext]) -> Response[Readiness]:
        """503 until start-up has finished and storage answers; use it as the readiness probe."""
        if not agent.ready:
            return Response(Readiness(status="not_ready", detail="start-up has not finished"), status_code=503)
        storage = await probe_storage(agent)
        if storage.status == "unhealthy":
            return Response(Readiness(status="not_ready", detail=storage.detail), status_code=503)
        return Response(Readiness(status="ready", detail="storage answers"), status_code=200)

    @get("/config", operation_id="GetConfig", summary="Non-sensitive settings", responses=error_responses())
    async def config(self, agent: NamedDependency[AgentContext]) -> ConfigReport:
        """The settings in force, without keys, secrets or webhook URLs (which may embed tokens)."""
        return config_report(agent)

    @get(
        "/capabilities",
        operation_id="GetCapabilities",
        summary="Engines, optimization types and workflow features this build supports",
        responses=error_responses(),
    )
    async def capabilities(self) -> Capabilities:
        """Derived from what the code registers, so it cannot drift from what the agent really does."""
        return capabilities()
