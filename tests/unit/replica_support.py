"""Two replicas on one database file: the documents they claim, stored with as little as a row needs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from performance_agent.judge import JudgeSettings
from performance_agent.judgements.state import JudgementDoc
from performance_agent.storage.factory import open_database
from performance_agent.storage.workflows import SqlWorkflowRepository
from performance_agent.workflows.policy import Guardrails, MonitorPolicy
from performance_agent.workflows.schemas import ActuatorSpec, ApprovalSpec
from performance_agent.workflows.state import EventDraft, WorkflowDoc
from tests.unit.storage_support import database_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from performance_agent.storage.sql import SqlDatabase

__all__ = ("judgement", "run_on_one_database", "store_workflows", "workflow", "workflow_replicas")


def run_on_one_database(kind: str, tmp_path: Path, body: Callable[[SqlDatabase, SqlDatabase], Awaitable[None]]) -> None:
    """Run `body` with two replicas' connections to one new database of `kind` (`storage_support.BACKENDS`).

    PostgreSQL: two pools on one database, as two agent processes have. SQLite: the one database
    object twice, since its file lock refuses a second opener (one replica per file is the
    production rule); the conditional statements that decide between replicas are the same.
    """

    async def main() -> None:
        url = database_url(kind, tmp_path / "agent.db")
        first = open_database(url)
        await first.open()
        second = open_database(url) if kind == "postgresql" else first
        try:
            if second is not first:
                await second.open()
            await body(first, second)
        finally:
            if second is not first:
                await second.close()
            await first.close()

    asyncio.run(main())


def workflow(workflow_id: str, instance_id: str, due: float, status: str = "monitoring") -> WorkflowDoc:
    return WorkflowDoc(
        workflow_id=workflow_id,
        engine="vllm",
        instance_ids=[instance_id],
        changes={"max_num_seqs": 128},
        env={},
        previous={},
        stages=[100],
        approval=ApprovalSpec(),
        monitor=MonitorPolicy(),
        guardrails=Guardrails(),
        actuator=ActuatorSpec(type="webhook"),
        created_by="ops",
        created_at=due - 60,
        updated_at=due - 60,
        status=status,
        status_since=due - 60,
        next_due_at=due,
    )


async def store_workflows(
    repository: SqlWorkflowRepository, count: int, due: float, status: str = "monitoring"
) -> list[str]:
    """`count` workflows due at `due`, `due + 1`, ... (one instance each); their ids in that order."""
    ids = [f"wf-{i}" for i in range(count)]
    for i, workflow_id in enumerate(ids):
        event = EventDraft(
            type="created", action="create", from_status=None, to_status=status, actor="ops", at=due, stage_index=0
        )
        await repository.create(workflow(workflow_id, f"vllm-{i}", due + i, status), event, None)
    return ids


async def workflow_replicas(
    one: SqlDatabase, other: SqlDatabase, count: int, status: str = "monitoring"
) -> tuple[SqlWorkflowRepository, SqlWorkflowRepository, list[str]]:
    """Two replicas' workflow repositories and the ids of `count` due workflows (`store_workflows`)."""
    a, b = SqlWorkflowRepository(one), SqlWorkflowRepository(other)
    return a, b, await store_workflows(a, count, due=1000.0, status=status)


def judgement(judgement_id: str, due: float) -> JudgementDoc:
    return JudgementDoc(
        judgement_id=judgement_id,
        canary_instance_ids=["c-0"],
        control_instance_ids=["k-0"],
        interval_s=30.0,
        max_duration_s=600.0,
        guardrails=Guardrails(),
        judge=JudgeSettings(),
        created_by="ops",
        created_at=due - 30,
        updated_at=due - 30,
        next_due_at=due,
    )
