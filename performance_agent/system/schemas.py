"""Payloads of the system endpoints (health, readiness, config, capabilities)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = (
    "Capabilities",
    "CheckResult",
    "ConfigReport",
    "DetailedHealth",
    "Health",
    "LeaderLease",
    "Readiness",
    "ReplicaStatus",
)

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


class LeaderLease(msgspec.Struct, kw_only=True):
    """The replica holding the leader lease (collection, discovery, alert evaluation), on the database clock."""

    replica_id: str
    since: datetime
    expires_at: datetime


class ReplicaStatus(msgspec.Struct, kw_only=True):
    """This replica and the leader, as this replica last read the lease (renewed every third of its TTL)."""

    replica_id: str
    role: Literal["leader", "follower"]
    #: None: nobody held a live lease at the last reading.
    leader: LeaderLease | None


class DetailedHealth(msgspec.Struct, kw_only=True):
    status: CheckStatus
    version: str
    agent_name: str
    uptime_s: float
    checks: list[CheckResult]
    replica: ReplicaStatus


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
