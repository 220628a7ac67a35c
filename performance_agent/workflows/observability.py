"""The rollout figures on the agent's own `/metrics`: statuses, rollbacks, stage and approval times, verdicts.

Observed where transitions happen (service and reconciler), from the timestamps stored on the
workflow, so a stage that straddled an agent restart is still measured from its real start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from performance_agent.workflows.gate import EVIDENCE_AGAINST_CANARY
from performance_agent.workflows.machine import WorkflowStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    from performance_agent.workflows.state import TransitionOutcome, WorkflowDoc

__all__ = ("WorkflowMetrics", "rollback_reason")

_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)

_S = WorkflowStatus
_STAGE_STATUSES = frozenset({_S.APPLYING, _S.MONITORING, _S.AWAITING_APPROVAL, _S.PAUSED})
_ROLLBACK_BY_TRIGGER = {
    "apply_failed": "apply_failed",
    "approval_timeout": "approval_timeout",
    "reject": "rejected",
    "abort": "aborted",
}


def rollback_reason(trigger: str, status_reason: str | None) -> str:
    if trigger in _ROLLBACK_BY_TRIGGER:
        return _ROLLBACK_BY_TRIGGER[trigger]
    if status_reason is not None and "consecutive failed windows" in status_reason:
        return "consecutive_failures"
    if status_reason is not None and status_reason.startswith(EVIDENCE_AGAINST_CANARY):
        return "evidence"
    return "guardrail"


class WorkflowMetrics:
    """The rollout series of one app's registry, observed where transitions happen."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.by_status = Gauge(
            "performance_agent_workflows",
            "Rollout workflows by status (terminal ones included).",
            ("status",),
            registry=registry,
        )
        self.rollbacks = Counter(
            "performance_agent_workflow_rollbacks_total",
            "Rollbacks started, by reason (evidence: the judge's evidence crossed its threshold; guardrail: an "
            "absolute limit; consecutive_failures: the canary could not be scraped; apply_failed, approval_timeout, "
            "rejected, aborted).",
            ("reason",),
            registry=registry,
        )
        self.stage_duration = Histogram(
            "performance_agent_workflow_stage_duration_seconds",
            "Time from starting to apply a stage until it was left, by how it ended (advanced, completed, "
            "rolled_back).",
            ("outcome",),
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.approval_wait = Histogram(
            "performance_agent_workflow_approval_wait_seconds",
            "Time a workflow waited for a human at a gate (start or stage), by how the wait ended.",
            ("gate", "outcome"),
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.window_verdicts = Counter(
            "performance_agent_workflow_windows_total",
            "Health windows judged, by verdict.",
            ("verdict",),
            registry=registry,
        )

    def observe_transition(self, doc: WorkflowDoc, outcome: TransitionOutcome | None, *, trigger: str) -> None:
        """Count one transition (`outcome` None: the workflow was just created)."""
        if outcome is None:
            return
        source, dest, now = outcome.from_status, outcome.to_status, doc.updated_at
        if dest is _S.ROLLING_BACK and source is not _S.ROLLING_BACK and source is not _S.FAILED:
            self.rollbacks.labels(rollback_reason(trigger, doc.status_reason)).inc()
        if source in (_S.PENDING_APPROVAL, _S.AWAITING_APPROVAL) and dest is not source:
            gate = "start" if source is _S.PENDING_APPROVAL else "stage"
            ended = {"approve": "approved", "approval_timeout": "timed_out"}.get(trigger, trigger)
            self.approval_wait.labels(gate, ended).observe(max(0.0, now - outcome.status_since))
        left_stage = doc.stage_index != outcome.from_stage_index or dest in (_S.COMPLETED, _S.ROLLING_BACK)
        if source in _STAGE_STATUSES and left_stage and outcome.stage_started_at is not None:
            ended = "completed" if dest is _S.COMPLETED else "rolled_back" if dest is _S.ROLLING_BACK else "advanced"
            self.stage_duration.labels(ended).observe(max(0.0, now - outcome.stage_started_at))

    def observe_verdict(self, verdict: str) -> None:
        self.window_verdicts.labels(verdict).inc()

    def publish_status_counts(self, counts: Mapping[str, int]) -> None:
        for status in WorkflowStatus:
            self.by_status.labels(status.value).set(counts.get(status.value, 0))
