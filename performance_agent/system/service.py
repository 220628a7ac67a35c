"""Health checks: each dependency answers with its own status and latency."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from performance_agent import __version__
from performance_agent.clock import utc_now
from performance_agent.settings import SECRET_FIELDS
from performance_agent.system.schemas import CheckResult, CheckStatus, ConfigReport, DetailedHealth

if TYPE_CHECKING:
    import sqlite3

    from performance_agent.context import AgentContext

__all__ = ("config_report", "detailed_health", "probe_storage")

#: A storage round trip slower than this still works but is worth a look.
SLOW_STORAGE_S = 0.5


def _write_and_read(connection: sqlite3.Connection) -> str:
    stamp = utc_now().isoformat()
    connection.execute(
        "INSERT INTO health_probe (id, written_at) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
        (stamp,),
    )
    row = connection.execute("SELECT written_at FROM health_probe WHERE id = 1").fetchone()
    return str(row[0]) if row and row[0] == stamp else ""


async def probe_storage(context: AgentContext) -> CheckResult:
    started = time.perf_counter()
    try:
        echoed = await context.database.run(_write_and_read)
    except Exception as exc:
        return CheckResult(name="storage", status="unhealthy", latency_s=None, detail=f"write/read failed: {exc}")
    latency = round(time.perf_counter() - started, 6)
    if not echoed:
        return CheckResult(name="storage", status="unhealthy", latency_s=latency, detail="read back a different value")
    status: CheckStatus = "degraded" if latency > SLOW_STORAGE_S else "healthy"
    return CheckResult(
        name="storage", status=status, latency_s=latency, detail=f"write/read ok ({context.database.path})"
    )


def _loop_checks(context: AgentContext) -> list[CheckResult]:
    results = []
    for loop in context.loops.report():
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


async def detailed_health(context: AgentContext) -> DetailedHealth:
    checks = [await probe_storage(context), *_loop_checks(context)]
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
    )


def config_report(context: AgentContext) -> ConfigReport:
    visible = {
        name: value for name, value in msgspec.structs.asdict(context.settings).items() if name not in SECRET_FIELDS
    }
    visible["alert_webhook_configured"] = context.settings.alert_webhook_url is not None
    visible["webhook_signing_enabled"] = context.settings.webhook_secret is not None
    return ConfigReport(version=__version__, settings=visible, auth_enabled=context.key_ring.enabled)
