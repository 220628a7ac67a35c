"""Health checks: each dependency answers with its own status and latency."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from performance_agent import __version__
from performance_agent.clock import utc
from performance_agent.settings import SECRET_FIELDS
from performance_agent.system.schemas import (
    CheckResult,
    CheckStatus,
    ConfigReport,
    DetailedHealth,
    LeaderLease,
    ReplicaStatus,
)

if TYPE_CHECKING:
    from performance_agent.context import AgentContext

__all__ = ("config_report", "detailed_health", "probe_storage")

#: A storage round trip slower than this still works but is worth a look.
SLOW_STORAGE_S = 0.5


async def probe_storage(context: AgentContext) -> CheckResult:
    """The storage probe's answer (reused for a second while it passes, see `storage.health`) as a check."""
    probed = await context.storage_probe.check()
    if not probed.ok:
        return CheckResult(name="storage", status="unhealthy", latency_s=probed.latency_s, detail=probed.detail)
    latency = probed.latency_s if probed.latency_s is not None else 0.0
    status: CheckStatus = "degraded" if latency > SLOW_STORAGE_S else "healthy"
    return CheckResult(name="storage", status=status, latency_s=probed.latency_s, detail=probed.detail)


def _loop_checks(context: AgentContext) -> list[CheckResult]:
    results = []
    for loop in [*context.loops.report(), *context.leader_loops.report()]:
        detail = f"last heartbeat {loop.seconds_since_heartbeat} s ago, {loop.restarts} restarts"
        results.append(
            CheckResult(
                name=f"loop:{loop.name}",
                status="healthy" if loop.alive else "degraded",
                latency_s=None,
                detail=detail if loop.alive else "not running or stalled: " + detail,
            )
        )
    return results


def replica_status(context: AgentContext) -> ReplicaStatus:
    coordinator = context.coordinator
    leader = coordinator.leader
    return ReplicaStatus(
        replica_id=coordinator.replica_id,
        role="leader" if coordinator.is_leader else "follower",
        leader=None
        if leader is None
        else LeaderLease(replica_id=leader.holder, since=utc(leader.since), expires_at=utc(leader.expires_at)),
    )


async def detailed_health(context: AgentContext, *, show_paths: bool = False) -> DetailedHealth:
    """`show_paths` (a caller with a valid key) adds where the data lives (never a password): the endpoint is open."""
    storage = await probe_storage(context)
    if show_paths and storage.status != "unhealthy":
        storage = msgspec.structs.replace(storage, detail=f"{storage.detail} ({context.database.description})")
    checks = [storage, *_loop_checks(context)]
    worst: CheckStatus = "healthy"
    if any(c.status == "degraded" for c in checks):
        worst = "degraded"
    # Without storage nothing the agent does can be kept, so its failure alone makes the agent unhealthy.
    if any(c.status == "unhealthy" for c in checks):
        worst = "unhealthy"
    return DetailedHealth(
        status=worst,
        version=__version__,
        agent_name=context.settings.agent_name,
        uptime_s=context.uptime_s,
        checks=checks,
        replica=replica_status(context),
    )


def config_report(context: AgentContext) -> ConfigReport:
    visible = {
        name: value for name, value in msgspec.structs.asdict(context.settings).items() if name not in SECRET_FIELDS
    }
    visible["alert_webhook_configured"] = context.settings.alert_webhook_url is not None
    visible["webhook_signing_enabled"] = context.settings.webhook_secret is not None
    return ConfigReport(version=__version__, settings=visible, auth_enabled=context.key_ring.enabled)
