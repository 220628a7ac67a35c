"""The API view of a stored workflow: epoch seconds become UTC datetimes, cohorts are spelled out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.clock import utc
from performance_agent.fleet.schemas import REDACTED
from performance_agent.workflows.machine import allowed_actions
from performance_agent.workflows.schemas import ActuatorSpec, CohortView, Workflow
from performance_agent.workflows.state import cohorts_of

if TYPE_CHECKING:
    from datetime import datetime

    from performance_agent.workflows.schemas import WindowRecord
    from performance_agent.workflows.state import WorkflowDoc

__all__ = ("to_view",)


def _maybe(epoch: float | None) -> datetime | None:
    return None if epoch is None else utc(epoch)


def _shown_actuator(doc: WorkflowDoc) -> ActuatorSpec:
    """The URL taken from PERF_AGENT_WORKFLOW_ACTUATOR_URL is a secret setting: shown as `REDACTED`."""
    if doc.actuator_url_from_settings:
        return ActuatorSpec(type=doc.actuator.type, url=REDACTED)
    return doc.actuator


def to_view(doc: WorkflowDoc, version: int, windows: list[WindowRecord] | None) -> Workflow:
    cohorts = cohorts_of(doc)
    progress = doc.progress
    return Workflow(
        workflow_id=doc.workflow_id,
        status=doc.status,
        status_reason=doc.status_reason,
        version=version,
        allowed_actions=allowed_actions(doc.status),
        engine=doc.engine,
        instance_ids=list(doc.instance_ids),
        changes=dict(doc.changes),
        env=dict(doc.env),
        plan_id=doc.plan_id,
        recommendation_ids=doc.recommendation_ids,
        description=doc.description,
        stages=list(doc.stages),
        stage_index=doc.stage_index,
        percent=doc.stages[doc.stage_index],
        changed_count=doc.changed_count,
        cohorts=CohortView(canary=list(cohorts.canary), control=list(cohorts.control)),
        approval=doc.approval,
        monitor=doc.monitor,
        guardrails=doc.guardrails,
        judge=doc.judge_settings,
        actuator=_shown_actuator(doc),
        created_by=doc.created_by,
        created_at=utc(doc.created_at),
        updated_at=utc(doc.updated_at),
        status_since=utc(doc.status_since),
        finished_at=_maybe(doc.finished_at),
        stage_started_at=_maybe(doc.stage_started_at),
        warmup_until=None if progress is None else utc(progress.warmup_until),
        stage_deadline=None if progress is None else utc(progress.stage_deadline),
        approval_deadline=_maybe(doc.approval_deadline),
        baseline=doc.baseline,
        approvals=list(doc.approvals),
        windows=windows,
        effects=list(doc.effects),
    )
