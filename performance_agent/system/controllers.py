"""Health, readiness, configuration and capabilities."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example

from performance_agent import __version__
from performance_agent.context import AgentDependency
from performance_agent.openapi_spec import responses
from performance_agent.security import principal_of
from performance_agent.system.capabilities import capabilities
from performance_agent.system.schemas import Capabilities, ConfigReport, DetailedHealth, Health, Readiness
from performance_agent.system.service import config_report, detailed_health, probe_storage

__all__ = ("PROCESS_STARTED_NS", "ProbesController", "SystemController")

#: Liveness reports the process's uptime; every agent built in this process shares the process.
PROCESS_STARTED_NS = time.monotonic_ns()

_OPEN = {"public": True, "rate_limit": False}
_HEALTHY = {
    "status": "healthy",
    "version": __version__,
    "agent_name": "performance-agent",
    "uptime_s": 3600.5,
    "checks": [
        {"name": "storage", "status": "healthy", "latency_s": 0.0004, "detail": "write/read ok"},
        {"name": "loop:collector", "status": "healthy", "latency_s": None, "detail": "last heartbeat 2.1 s ago"},
    ],
    "replica": {
        "replica_id": "agent-0-4242-9f2c1e",
        "role": "follower",
        "leader": {
            "replica_id": "agent-1-5150-03ab7d",
            "since": "2026-01-01T12:00:00.125000Z",
            "expires_at": "2026-01-01T12:03:10.512000Z",
        },
    },
}
_UNHEALTHY = {
    **_HEALTHY,
    "status": "unhealthy",
    "checks": [{"name": "storage", "status": "unhealthy", "latency_s": None, "detail": "write/read failed: disk I/O"}],
}


def _report(status: int, model: type, example: object, description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=model,
        description=description,
        generate_examples=False,
        examples=[Example(summary=description, value=example)],
    )


class ProbesController(Controller):
    """The health probes: open to everyone, so the app serves them outside the API key check.

    Orchestrators and load balancers call them constantly; `create_app` refuses to build if a
    handler here is not marked public.
    """

    path = "/api/v1"
    tags = ["System"]

    @get(
        "/health",
        opt=_OPEN,
        security=[],
        operation_id="GetHealth",
        summary="Liveness: the process answers",
        responses={200: _report(200, Health, {"status": "ok", "version": __version__, "uptime_s": 12.5}, "Alive")},
        sync_to_thread=False,
    )
    def health(self) -> Health:
        """Cheap liveness probe; never touches storage, never rate limited, needs no key.

        It takes no parameters at all so Litestar skips argument parsing, and it is a plain function
        so no coroutine is made: probes and load balancers call it constantly, and its cost is the
        floor of every other request's. Whole milliseconds over 1000 give the 3 decimals without
        `round()`, which formats and re-parses the float (a few % of this request).
        """
        return Health(
            status="ok", version=__version__, uptime_s=(time.monotonic_ns() - PROCESS_STARTED_NS) // 1_000_000 / 1000
        )

    @get(
        "/health/detailed",
        opt=_OPEN,
        security=[],
        operation_id="GetDetailedHealth",
        summary="Each dependency with its status and latency",
        responses={
            200: _report(200, DetailedHealth, _HEALTHY, "Healthy or degraded"),
            503: _report(503, DetailedHealth, _UNHEALTHY, "Unhealthy: storage failed"),
        },
    )
    async def detailed(self, request: Request[Any, Any, Any], agent: AgentDependency) -> Response[DetailedHealth]:
        """Storage write/read probe (at most once a second) and background loop heartbeats; 503 when unhealthy.

        The database path is shown only to a caller sending a valid API key.
        """
        keyed = agent.key_ring.enabled and principal_of(request.scope, agent.key_ring) is not None
        report = await detailed_health(agent, show_paths=keyed)
        return Response(report, status_code=503 if report.status == "unhealthy" else 200)

    @get(
        "/health/ready",
        opt=_OPEN,
        security=[],
        operation_id="GetReadiness",
        summary="Readiness: start-up finished and storage answers",
        responses={
            200: _report(200, Readiness, {"status": "ready", "detail": "storage answers"}, "Ready"),
            503: _report(503, Readiness, {"status": "not_ready", "detail": "start-up has not finished"}, "Not ready"),
        },
    )
    async def ready(self, agent: AgentDependency) -> Response[Readiness]:
        """503 until start-up has finished and storage answers; use it as the readiness probe."""
        if not agent.ready:
            return Response(Readiness(status="not_ready", detail="start-up has not finished"), status_code=503)
        storage = await probe_storage(agent)
        if storage.status == "unhealthy":
            return Response(Readiness(status="not_ready", detail=storage.detail), status_code=503)
        return Response(Readiness(status="ready", detail="storage answers"), status_code=200)


class SystemController(Controller):
    """Configuration and capabilities: behind the API key check like the rest of the API."""

    path = "/api/v1"
    tags = ["System"]

    @get(
        "/config",
        operation_id="GetConfig",
        summary="Non-sensitive settings",
        responses=responses(
            200,
            ConfigReport,
            {"version": __version__, "settings": {"port": 8000, "environment": "production"}, "auth_enabled": True},
            "The settings in force",
        ),
    )
    async def config(self, agent: AgentDependency) -> ConfigReport:
        """The settings in force, without keys, secrets or webhook URLs (which may embed tokens)."""
        return config_report(agent)

    @get(
        "/capabilities",
        operation_id="GetCapabilities",
        summary="Engines, optimization types and workflow features this build supports",
        responses=responses(
            200,
            Capabilities,
            {
                "version": __version__,
                "engines": ["sglang", "tgi", "vllm"],
                "optimization_types": ["kv_cache", "quantization", "batching"],
                "bottleneck_types": ["kv_cache_pressure", "queueing"],
                "workflow_statuses": ["pending_approval", "monitoring", "completed"],
                "workflow_actions": ["abort", "approve"],
            },
            "What this build supports",
        ),
    )
    async def capabilities(self) -> Capabilities:
        """Derived from what the code registers, so it cannot drift from what the agent really does."""
        return capabilities()
