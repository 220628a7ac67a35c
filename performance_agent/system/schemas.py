"""Payloads of the system endpoints (health, readiness, config, capabilities)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ("Capabilities", "CheckResult", "ConfigReport", "DetailedHealth", "Health", "Readiness")

CheckStatus = Literal["healthy", "degraded", "unhealthy"]


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok"]
    version: str
    uptime_s: float


class CheckResult(msgspec.Struct, kw_only=True):
    name: str
    status: CheckStatus
    latency_s: float | None
    detail: str


class DetailedHealth(msgspec.Struct, kw_only=True):
    status: CheckStatus
    version: str
    agent_name: str
    uptime_s: float
    checks: list[CheckResult]


class Readiness(msgspec.Struct, kw_only=True):
    status: Literal["ready", "not_ready"]
    detail: str


class ConfigReport(msgspec.Struct, kw_only=True):
    version: str
    settings: dict[str, Any]
    auth_enabled: bool


class Capabilities(msgspec.Struct, kw_only=True):
    version: str
    engines: list[str]
    optimization_types: list[str]
    bottleneck_types: list[str]
    workflow_statuses: list[str]
    workflow_actions: list[str]
