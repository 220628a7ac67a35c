"""Rules of `POST /workflows` that the body types cannot express, and the new workflow document.

Every problem found is reported at once, each with its dotted field path, so a client fixes a
request in one round trip. Instances are checked against the registry (registered, one engine);
the actuator URL against the webhook allowlist without DNS (the full check, with resolution,
runs before every call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.errors import ErrorDetail, ForbiddenError, RequestValidationError
from performance_agent.judge import JudgeSettings
from performance_agent.outbound.target_guard import TargetRefusedError, check_static
from performance_agent.workflows.cohorts import DEFAULT_STAGES, stage_gate_problems, stage_problems
from performance_agent.workflows.machine import initial_status
from performance_agent.workflows.policy import resolve_guardrails, resolve_judge, resolve_monitor
from performance_agent.workflows.schemas import ActuatorSpec, ApprovalSpec
from performance_agent.workflows.state import WorkflowDoc

if TYPE_CHECKING:
    from collections.abc import Mapping

    from performance_agent.fleet.ports import StoredInstance
    from performance_agent.outbound.target_guard import TargetAllowlist
    from performance_agent.workflows.policy import Guardrails, MonitorPolicy
    from performance_agent.workflows.schemas import FlagValue, WorkflowCreate

__all__ = ("CreateDefaults", "validate_create")


@dataclass(frozen=True, slots=True)
class CreateDefaults:
    guardrails: Guardrails
    monitor: MonitorPolicy
    actuator: ActuatorSpec | None
    webhook_allowlist: TargetAllowlist
    judge: JudgeSettings = field(default_factory=JudgeSettings)


def _detail(field: str, message: str, kind: str = "invalid") -> ErrorDetail:
    return ErrorDetail(field=field, message=message, type=kind)


def _form_problems(body: WorkflowCreate, changes: Mapping[str, object], env: Mapping[str, object]) -> list[ErrorDetail]:
    by_changes = body.changes is not None or body.env is not None
    by_plan = body.plan_id is not None or body.recommendation_ids is not None
    if by_changes and by_plan:
        return [_detail("body.plan_id", "give either changes/env or plan_id with recommendation_ids, not both")]
    if by_plan:
        problems = []
        if body.plan_id is None:
            problems.append(_detail("body.plan_id", "field required with recommendation_ids", "missing"))
        if not body.recommendation_ids:
            problems.append(
                _detail("body.recommendation_ids", "name at least one recommendation of the plan", "missing")
            )
        return problems
    if not changes and not env:
        return [_detail("body.changes", "give at least one flag in changes or one variable in env", "missing")]
    return []


def _instance_problems(
    instance_ids: list[str], registered: Mapping[str, StoredInstance | None]
) -> tuple[list[ErrorDetail], str | None]:
    problems: list[ErrorDetail] = []
    seen: set[str] = set()
    engine: str | None = None
    for index, instance_id in enumerate(instance_ids):
        field = f"body.instance_ids.{index}"
        if instance_id in seen:
            problems.append(_detail(field, f"{instance_id} is listed twice"))
            continue
        seen.add(instance_id)
        stored = registered.get(instance_id)
        if stored is None:
            problems.append(_detail(field, f"{instance_id} is not a registered instance", "not_registered"))
            continue
        if stored.spec.gone_since is not None:
            # 422 like an unregistered id: the request names a server that is not there (docs/integrations.md).
            since = stored.spec.gone_since.isoformat()
            problems.append(_detail(field, f"{instance_id} is gone from Prometheus since {since}", "gone"))
            continue
        if engine is None:
            engine = stored.spec.engine
        elif stored.spec.engine != engine:
            problems.append(
                _detail(field, f"{instance_id} runs {stored.spec.engine}; a workflow changes one engine ({engine})")
            )
    return problems, engine


def _resolve_actuator(body: WorkflowCreate, defaults: CreateDefaults) -> tuple[ActuatorSpec | None, list[ErrorDetail]]:
    actuator = body.actuator
    if actuator is None:
        if defaults.actuator is None:
            return None, [
                _detail(
                    "body.actuator",
                    "no default actuator is configured (PERF_AGENT_WORKFLOW_ACTUATOR_URL); name one here",
                    "missing",
                )
            ]
        actuator = defaults.actuator
    if actuator.url is None and actuator.type == "webhook":
        url = defaults.actuator.url if defaults.actuator is not None and defaults.actuator.type == "webhook" else None
        if url is None:
            return None, [_detail("body.actuator.url", "a webhook actuator needs a url", "missing")]
        actuator = ActuatorSpec(type="webhook", url=url)
    return actuator, []


def _check_target(actuator: ActuatorSpec, allowlist: TargetAllowlist) -> None:
    if actuator.url is None:
        return
    try:
        check_static(actuator.url, allowlist)
    except TargetRefusedError as refused:
        raise ForbiddenError(
            f"The actuator URL is not an allowed webhook target: {refused.reason}",
            error="target_not_allowed",
            context={"host": refused.host} if refused.host else {},
        ) from None


def validate_create(
    body: WorkflowCreate,
    *,
    changes: Mapping[str, FlagValue],
    env: Mapping[str, str | None],
    registered: Mapping[str, StoredInstance | None],
    defaults: CreateDefaults,
    workflow_id: str,
    actor: str,
    now: float,
) -> WorkflowDoc:
    """The new workflow, in its initial status; raises 422 naming every problem, or 403 for the actuator URL."""
    stages = list(body.stages) if body.stages is not None else list(DEFAULT_STAGES)
    approval = body.approval if body.approval is not None else ApprovalSpec()
    problems = _form_problems(body, changes, env)
    problems += [_detail("body.stages", problem) for problem in stage_problems(stages)]
    if not problems or all(p.field != "body.stages" for p in problems):
        problems += [
            _detail("body.approval.stage_gates", problem)
            for problem in stage_gate_problems(approval.stage_gates, stages)
        ]
    instance_problems, engine = _instance_problems(body.instance_ids, registered)
    problems += instance_problems
    actuator, actuator_problems = _resolve_actuator(body, defaults)
    problems += actuator_problems
    if problems:
        summary = "; ".join(f"{d.field}: {d.message}" for d in problems)
        raise RequestValidationError(f"The workflow cannot be started: {summary}", problems)
    assert actuator is not None
    assert engine is not None
    _check_target(actuator, defaults.webhook_allowlist)
    status = initial_status(approval.required)
    approval = ApprovalSpec(
        required=approval.required, stage_gates=sorted(set(approval.stage_gates)), timeout_s=approval.timeout_s
    )
    doc = WorkflowDoc(
        workflow_id=workflow_id,
        engine=engine,
        instance_ids=list(body.instance_ids),
        changes=dict(changes),
        env=dict(env),
        previous={
            instance_id: dict(stored.spec.engine_args) if stored is not None and stored.spec.engine_args else None
            for instance_id, stored in ((i, registered.get(i)) for i in body.instance_ids)
        },
        plan_id=body.plan_id,
        recommendation_ids=list(body.recommendation_ids) if body.recommendation_ids is not None else None,
        description=body.description,
        stages=stages,
        approval=approval,
        monitor=resolve_monitor(body.monitor, defaults.monitor),
        guardrails=resolve_guardrails(body.guardrails, defaults.guardrails),
        judge=resolve_judge(body.judge, body.guardrails, defaults.judge),
        actuator=actuator,
        actuator_url_from_settings=actuator.url is not None and (body.actuator is None or body.actuator.url is None),
        created_by=actor,
        created_at=now,
        updated_at=now,
        status=status.value,
        status_since=now,
        next_due_at=now,
    )
    if approval.required:
        doc.approval_deadline = None if approval.timeout_s is None else now + approval.timeout_s
        doc.next_due_at = doc.approval_deadline
    return doc
