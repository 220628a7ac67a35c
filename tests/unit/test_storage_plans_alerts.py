"""Plan and alert repositories: the same contract on SQLite (across a reopen) and in memory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
import pytest

from performance_agent.analysis.ports import AlertRepository
from performance_agent.analysis.schemas import AlertEvent, AlertState
from performance_agent.optimization.examples import plan_example
from performance_agent.optimization.ports import PlanRepository
from performance_agent.optimization.schemas import OptimizationPlan
from performance_agent.storage.alerts import MemoryAlertRepository, SqlAlertRepository
from performance_agent.storage.factory import open_database
from performance_agent.storage.plans import MemoryPlanRepository, SqlPlanRepository
from tests.unit.storage_support import BACKENDS, database_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
KINDS = (*BACKENDS, "memory")


def plan(plan_id: str) -> OptimizationPlan:
    return msgspec.structs.replace(msgspec.convert(plan_example(), OptimizationPlan), plan_id=plan_id)


def alert(instance_id: str, started: datetime, fingerprint: str, state: str = "firing") -> AlertState:
    return AlertState(
        instance_id=instance_id,
        objective="ttft_p99_s",
        pair="1h/5m",
        state=state,  # type: ignore[arg-type]
        started_at=started,
        ended_at=None if state == "firing" else started + timedelta(minutes=5),
        factor=14.4,
        fingerprint=fingerprint,
    )


def run(kind: str, path: Path, body: Callable[[PlanRepository, AlertRepository], Awaitable[None]]) -> None:
    async def main() -> None:
        if kind == "memory":
            await body(MemoryPlanRepository(), MemoryAlertRepository())
            return
        database = open_database(database_url(kind, path / "agent.db"))
        await database.open()
        try:
            await body(SqlPlanRepository(database), SqlAlertRepository(database))
        finally:
            await database.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_plans_are_stored_whole_and_read_by_id(kind: str, tmp_path: Path) -> None:
    async def body(plans: PlanRepository, _: AlertRepository) -> None:
        stored = plan("plan-" + "1" * 32)
        await plans.add(stored)
        found = await plans.get(stored.plan_id)
        assert found == stored
        assert found is not None
        found.recommendations.clear()  # a caller mutating its copy changes nothing stored
        again = await plans.get(stored.plan_id)
        assert again is not None
        assert again.recommendations == stored.recommendations
        assert await plans.get("plan-" + "2" * 32) is None

    run(kind, tmp_path, body)


def test_sqlite_plans_survive_a_reopen(tmp_path: Path) -> None:
    stored = plan("plan-" + "3" * 32)
    run("sqlite", tmp_path, lambda plans, _: plans.add(stored))

    async def check(plans: PlanRepository, _: AlertRepository) -> None:
        assert await plans.get(stored.plan_id) == stored

    run("sqlite", tmp_path, check)


@pytest.mark.parametrize("kind", KINDS)
def test_alert_episodes_open_close_and_list(kind: str, tmp_path: Path) -> None:
    async def body(_: PlanRepository, alerts: AlertRepository) -> None:
        first = alert("a", T0, "f1")
        second = alert("b", T0 + timedelta(minutes=1), "f2")
        await alerts.record([AlertEvent(kind="fire", at=T0, alert=first), AlertEvent(kind="fire", at=T0, alert=second)])
        assert [s.instance_id for s in await alerts.firing()] == ["a", "b"]
        assert [s.instance_id for s in await alerts.firing("b")] == ["b"]

        closed = msgspec.structs.replace(first, state="resolved", ended_at=T0 + timedelta(minutes=9))
        await alerts.record([AlertEvent(kind="resolve", at=closed.ended_at or T0, alert=closed)])
        assert [s.instance_id for s in await alerts.firing()] == ["b"]
        assert await alerts.list(state="resolved") == [closed]
        # The same alert firing again is a new episode; the old one stays in the history.
        reopened = alert("a", T0 + timedelta(hours=2), "f1")
        await alerts.record([AlertEvent(kind="fire", at=reopened.started_at, alert=reopened)])
        newest_first = await alerts.list()
        assert [(s.instance_id, s.state) for s in newest_first] == [("a", "firing"), ("b", "firing"), ("a", "resolved")]
        assert [s.started_at for s in await alerts.list(instance_id="a")] == [reopened.started_at, T0]
        assert len(await alerts.list(limit=2)) == 2
        await alerts.record([])

    run(kind, tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_resolving_an_unknown_episode_stores_nothing(kind: str, tmp_path: Path) -> None:
    async def body(_: PlanRepository, alerts: AlertRepository) -> None:
        ghost = alert("a", T0, "f9", state="resolved")
        await alerts.record([AlertEvent(kind="resolve", at=T0, alert=ghost)])
        assert await alerts.list() == []

    run(kind, tmp_path, body)
