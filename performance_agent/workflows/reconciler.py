"""The reconciler: the loop that moves every active workflow along by itself, level-triggered.

Each tick it loads the workflows whose `next_due_at` has come, looks at each one's stored
status, deadlines and counters plus the fleet (fresh scrapes, the actuator), fires at most the
triggers that observation justifies, and saves the result with its audit events under the
version it read. Nothing lives only in memory: after a restart (even SIGKILL) the next tick
picks up every active workflow from what is stored, with the same deadlines and the same
outbox `event_id`s. The clock is injected, so tests drive it tick by tick without sleeping.

If a human acted on a workflow while it was being processed, the save loses the version race
and the work is simply redone at the next tick from the new state. With several replicas on one
database, each tick claims the due workflows it will process (no other replica holds them;
`storage.claims`) and releases them when done, so each workflow is moved by one replica at a time;
a dead replica's claims expire and another replica continues its workflows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from performance_agent.clock import utc
from performance_agent.judge import (
    INSUFFICIENT_CANARY_TRAFFIC,
    JudgeState,
    Tolerances,
    aa_check,
    judge_window,
    plan_margins,
)
from performance_agent.metrics.builder import cohort_counts, cohort_figures
from performance_agent.workflows.cohorts import rollback_plan, stage_instance_ids
from performance_agent.workflows.effects import record_stage_effects
from performance_agent.workflows.gate import (
    StageProgress,
    cohort_summary,
    decide_after_window,
    judged,
    scrape_failure,
)
from performance_agent.workflows.machine import InternalTrigger, WorkflowStatus, is_active
from performance_agent.workflows.ports import VersionConflict
from performance_agent.workflows.schemas import BaselineSummary, WindowRecord
from performance_agent.workflows.state import EventDraft, apply_event_id, cohorts_of, transition

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from performance_agent.background import Heartbeat
    from performance_agent.judge import CohortCounts, JudgePlan
    from performance_agent.metrics.builder import RawScrape
    from performance_agent.replicas.lease import Claimant
    from performance_agent.workflows.observability import WorkflowMetrics
    from performance_agent.workflows.observer import CohortObserver, Observation
    from performance_agent.workflows.outbox import CallOutcome, OutboxDriver
    from performance_agent.workflows.ports import OutboxUpdate, StoredWorkflow, WorkflowRepository
    from performance_agent.workflows.schemas import CohortFigures
    from performance_agent.workflows.state import TransitionOutcome, WorkflowDoc

    #: The SLO latency targets (concept key -> seconds) goodput is judged against, for these instances.
    SloTargetsOf = Callable[[Sequence[str]], Awaitable[dict[str, float]]]

__all__ = ("AGENT_ACTOR", "Reconciler")

logger = logging.getLogger("performance_agent.workflows.reconciler")

#: The actor recorded on every transition the agent makes by itself.
AGENT_ACTOR = "agent"
_S = WorkflowStatus
_I = InternalTrigger
_WATCHED = (_S.MONITORING, _S.AWAITING_APPROVAL, _S.PAUSED)


class _Pending:
    """The changes one processing pass wants to save together."""

    def __init__(self, stored: StoredWorkflow) -> None:
        self.stored = stored
        self.doc = stored.doc
        self.events: list[EventDraft] = []
        self.outbox: list[OutboxUpdate] = []
        self.window: WindowRecord | None = None
        self.moves: list[tuple[TransitionOutcome, str]] = []
        self.dirty = False

    def fire(self, trigger: _I, now: float, reason: str | None = None, **details: object) -> None:
        outcome = transition(self.doc, trigger.value, now=now, reason=reason)
        self.events.append(
            EventDraft(
                type="transition",
                action=trigger.value,
                from_status=outcome.from_status.value,
                to_status=self.doc.status,
                actor=AGENT_ACTOR,
                at=now,
                stage_index=self.doc.stage_index,
                reason=reason,
                details=dict(details),
            )
        )
        self.moves.append((outcome, trigger.value))
        self.dirty = True

    def reschedule(self, due: float | None) -> None:
        if self.doc.next_due_at != due:
            self.doc.next_due_at = due
            self.dirty = True


class Reconciler:
    def __init__(
        self,
        *,
        workflows: WorkflowRepository,
        observer: CohortObserver,
        outbox: OutboxDriver,
        metrics: WorkflowMetrics,
        clock: Callable[[], float],
        claimant: Claimant,
        tick_s: float = 1.0,
        concurrency: int = 32,
        batch: int = 1000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        slo_targets: SloTargetsOf | None = None,
    ) -> None:
        self._workflows = workflows
        self._slo_targets = slo_targets
        self._observer = observer
        self._outbox = outbox
        self._metrics = metrics
        self._clock = clock
        self._claimant = claimant
        self._tick_s = tick_s
        self._semaphore = asyncio.Semaphore(concurrency)
        self._batch = batch
        self._sleep = sleep

    async def run(self, beat: Heartbeat) -> None:
        """The loop body for `BackgroundLoops.start`."""
        while True:
            beat()
            await self.tick()
            self._metrics.publish_status_counts(await self._workflows.count_by_status())
            await self._sleep(self._tick_s)

    async def tick(self) -> list[str]:
        """Claim and process every workflow that is due now and free; returns their ids."""
        claimant = self._claimant
        due = await self._workflows.claim_due(
            self._clock(), self._batch, holder=claimant.replica_id, ttl_s=claimant.ttl_s
        )
        try:
            await asyncio.gather(*(self._guarded(workflow_id) for workflow_id in due))
        finally:
            await self._workflows.release_claims(due, claimant.replica_id)
        return due

    async def _guarded(self, workflow_id: str) -> None:
        async with self._semaphore:
            try:
                await self.process(workflow_id)
            except VersionConflict:
                logger.info("workflow changed while processed; retrying next tick", extra={"workflow": workflow_id})
            except Exception:
                logger.exception("workflow processing failed", extra={"workflow": workflow_id})

    async def process(self, workflow_id: str) -> None:
        stored = await self._workflows.get(workflow_id)
        if stored is None or not is_active(stored.doc.status):
            return
        now = self._clock()
        if stored.doc.next_due_at is None or stored.doc.next_due_at > now:
            return
        pending = _Pending(stored)
        status = stored.doc.status_enum
        if status is _S.PENDING_APPROVAL:
            self._approval_deadline(pending, now)
        elif status is _S.CAPTURING_BASELINE:
            await self._baseline(pending, now)
        elif status is _S.APPLYING:
            await self._apply(pending, now)
        elif status is _S.PAUSED and stored.doc.changed_count == 0:  # the A/A check: nothing to watch
            pending.reschedule(None)
        elif status in _WATCHED:
            if not self._approval_deadline(pending, now):
                await self._watch(pending, now)
        elif status is _S.ROLLING_BACK:
            await self._roll_back(pending, now)
        else:  # failed: waits for retry-rollback
            pending.reschedule(None)
        await self._save(pending)

    async def _save(self, pending: _Pending) -> None:
        if not pending.dirty:
            return
        await self._workflows.save(
            pending.doc, pending.stored.version, pending.events, window=pending.window, outbox=pending.outbox
        )
        for outcome, trigger in pending.moves:
            self._metrics.observe_transition(pending.doc, outcome, trigger=trigger)
        if pending.window is not None:
            self._metrics.observe_verdict(pending.window.verdict)

    # ------------------------------------------------------------------------- approvals
    def _approval_deadline(self, pending: _Pending, now: float) -> bool:
        doc = pending.doc
        deadline = doc.approval_deadline
        if doc.status_enum not in (_S.PENDING_APPROVAL, _S.AWAITING_APPROVAL):
            return False
        if deadline is None:
            if doc.status_enum is _S.PENDING_APPROVAL:
                pending.reschedule(None)
            return False
        if now < deadline:
            if doc.status_enum is _S.PENDING_APPROVAL:
                pending.reschedule(deadline)
            return False
        waited = doc.approval.timeout_s or 0.0
        pending.fire(_I.APPROVAL_TIMEOUT, now, f"nobody approved within {waited:g} s")
        return True

    # ---------------------------------------------------------------------------- baseline
    async def _baseline(self, pending: _Pending, now: float) -> None:
        doc = pending.doc
        interval = doc.monitor.interval_s
        if doc.baseline_started_at is None:
            seen = await self._observer.observe(doc.instance_ids)
            doc.baseline_marks = {i: o.collected_at for i, o in seen.items() if o.collected_at is not None}
            doc.baseline_started_at = now
            doc.baseline_deadline = now + max(3 * interval, interval + 30.0)
            pending.dirty = True
            pending.reschedule(now + interval)
            return
        if now < doc.baseline_started_at + interval:
            pending.reschedule(doc.baseline_started_at + interval)
            return
        seen = await self._observer.observe(doc.instance_ids, now=now, interval_s=interval, after=doc.baseline_marks)
        series, errors = await self._observer.series(doc.instance_ids, doc.baseline_marks, seen)
        if not errors:
            await self._baseline_captured(pending, now, series)
            return
        for instance_id, observation in seen.items():
            if observation.collected_at is not None and instance_id not in doc.baseline_marks:
                doc.baseline_marks[instance_id] = observation.collected_at
        pending.dirty = True
        deadline = doc.baseline_deadline or now
        if now >= deadline:
            problems = ", ".join(f"{i} ({code})" for i, code in sorted(errors.items()))
            pending.fire(_I.BASELINE_FAILED, now, f"no baseline: cannot scrape {problems}", scrape_errors=errors)
            return
        pending.reschedule(min(now + interval, deadline))

    async def _plan(self, doc: WorkflowDoc, baseline: CohortCounts) -> JudgePlan:
        """The judge's tests for this workflow, from the baseline's buckets and the guardrails."""
        targets = await self._slo_targets(doc.instance_ids) if self._slo_targets is not None else {}
        return plan_margins(baseline, Tolerances.from_guardrails(doc.guardrails, targets), doc.judge_settings)

    async def _baseline_captured(self, pending: _Pending, now: float, series: list[list[RawScrape]]) -> None:
        """Store the baseline (display figures and bucket counts), plan the judge, run the A/A check.

        The A/A check compares the instances of the first canary cohort with the rest over the
        same capture: a cohort that is already slower pauses the workflow before anything changes.
        """
        doc = pending.doc
        counts = cohort_counts(series)
        figures = cohort_figures(series)
        plan = await self._plan(doc, counts)
        first = set(stage_instance_ids(doc.instance_ids, doc.stages, 0))
        canary = [
            scrapes for instance_id, scrapes in zip(doc.instance_ids, series, strict=True) if instance_id in first
        ]
        rest = [
            scrapes for instance_id, scrapes in zip(doc.instance_ids, series, strict=True) if instance_id not in first
        ]
        aa = aa_check(cohort_counts(canary), cohort_counts(rest), plan) if rest else None
        doc.baseline = BaselineSummary(
            captured_at=utc(now), window_s=figures.window_s, figures=cohort_summary(figures), counts=counts, aa_check=aa
        )
        doc.judge_plan, doc.judge_state = plan, JudgeState()
        if aa is not None and not aa.passed:
            pending.fire(_I.BASELINE_SUSPECT, now, "; ".join(aa.reasons), first_canary=sorted(first))
            return
        pending.fire(_I.BASELINE_READY, now, "baseline captured")

    # ----------------------------------------------------------------------------- actuator
    def _call_failed(self, pending: _Pending, outcome: CallOutcome, now: float) -> None:
        pending.reschedule(outcome.retry_at if outcome.retry_at is not None else now)
        pending.dirty = True

    async def _apply(self, pending: _Pending, now: float) -> None:
        doc = pending.doc
        targets = stage_instance_ids(doc.instance_ids, doc.stages, doc.stage_index)
        if not targets:
            pending.fire(_I.STAGE_APPLIED, now, "this stage adds no instance")
            return
        outcome = await self._outbox.drive(doc, "apply", doc.stage_index, targets, now)
        if outcome.state == "waiting":
            self._call_failed(pending, outcome, now)
            return
        pending.outbox.append(outcome.settle(now))
        if outcome.state == "delivered":
            pending.fire(
                _I.STAGE_APPLIED,
                now,
                None,
                event_id=outcome.event_id,
                instance_ids=list(targets),
                attempts=outcome.attempts,
            )
        else:
            reason = (
                f"the actuator failed to apply stage {doc.stage_index} after {outcome.attempts} attempts: "
                f"{outcome.error}"
            )
            pending.fire(_I.APPLY_FAILED, now, reason, event_id=outcome.event_id, instance_ids=list(targets))

    async def _roll_back(self, pending: _Pending, now: float) -> None:
        doc = pending.doc
        while True:
            plan = rollback_plan(doc.instance_ids, doc.stages, doc.changed_count)
            if not plan:
                pending.fire(_I.ROLLBACK_COMPLETE, now, doc.status_reason or "every changed instance was reverted")
                return
            step = plan[0]
            applied = await self._workflows.outbox_get(apply_event_id(doc.workflow_id, step.stage_index))
            if applied is None or applied.sent_attempts == 0:
                pending.fire(
                    _I.ROLLBACK_STEP_DONE,
                    now,
                    doc.status_reason,
                    stage=step.stage_index,
                    instance_ids=list(step.instance_ids),
                    skipped="its apply call never reached the actuator",
                )
                continue
            outcome = await self._outbox.drive(doc, "rollback", step.stage_index, step.instance_ids, now)
            if outcome.state == "waiting":
                self._call_failed(pending, outcome, now)
                return
            pending.outbox.append(outcome.settle(now))
            if outcome.state == "exhausted":
                still = [i for s in plan for i in s.instance_ids]
                reason = (
                    f"rollback of stage {step.stage_index} failed after {outcome.attempts} attempts ({outcome.error}); "
                    f"instances still changed: {', '.join(still)}"
                )
                pending.fire(_I.ROLLBACK_FAILED, now, reason, event_id=outcome.event_id, instance_ids=still)
                return
            pending.fire(
                _I.ROLLBACK_STEP_DONE,
                now,
                doc.status_reason,
                stage=step.stage_index,
                instance_ids=list(step.instance_ids),
                event_id=outcome.event_id,
            )

    # ----------------------------------------------------------------------- health gate
    async def _watch(self, pending: _Pending, now: float) -> None:
        doc = pending.doc
        if doc.progress is None:  # e.g. a pause before any window: watch from now on
            doc.progress = StageProgress(
                monitor_started_at=now, warmup_until=now, stage_deadline=now + doc.monitor.duration_s
            )
            pending.dirty = True
        progress = doc.progress
        if now < progress.warmup_until:
            pending.reschedule(progress.warmup_until)
            return
        cohorts = cohorts_of(doc)
        members = [*cohorts.canary, *cohorts.control]
        if doc.window_started_at is None:
            seen = await self._observer.observe(members)
            doc.window_marks = {i: o.collected_at for i, o in seen.items() if o.collected_at is not None}
            doc.window_started_at = now
            doc.next_window_at = now + doc.monitor.interval_s
            pending.dirty = True
            pending.reschedule(doc.next_window_at)
            return
        if doc.next_window_at is not None and now < doc.next_window_at:
            pending.reschedule(doc.next_window_at)
            return
        seen = await self._observer.observe(members, now=now, interval_s=doc.monitor.interval_s, after=doc.window_marks)
        await self._judge(pending, now, list(cohorts.canary), list(cohorts.control), seen)

    async def _judge(
        self, pending: _Pending, now: float, canary_ids: list[str], control_ids: list[str], seen: dict[str, Observation]
    ) -> None:
        doc = pending.doc
        progress = doc.progress
        assert progress is not None  # set by _watch
        canary_series, canary_errors = await self._observer.series(canary_ids, doc.window_marks, seen)
        control_series, control_errors = await self._observer.series(control_ids, doc.window_marks, seen)
        canary = cohort_summary(cohort_figures(canary_series))
        reference: CohortFigures | None
        if control_ids:
            reference = cohort_summary(cohort_figures(control_series))
        else:
            reference = doc.baseline.figures if doc.baseline is not None else None
        result = scrape_failure(doc.guardrails, canary_errors, control_errors)
        if result is None:
            canary_counts = cohort_counts(canary_series)
            reference_counts = cohort_counts(control_series) if control_ids else None
            if doc.judge_plan is None:  # stored before the sequential judge: plan from what is known now
                known = doc.baseline.counts if doc.baseline is not None else None
                doc.judge_plan = await self._plan(doc, known or reference_counts or canary_counts)
            doc.judge_state, judgement = judge_window(
                doc.judge_state or JudgeState(), doc.judge_plan, canary_counts, reference_counts
            )
            result = judged(judgement)
        status = doc.status_enum
        decision = decide_after_window(
            progress,
            result,
            now=now,
            rules=doc.guardrails,
            monitor=doc.monitor,
            settings=doc.judge_settings,
            may_advance=status is _S.MONITORING,
        )
        seq = await self._workflows.next_window_seq(doc.workflow_id)
        pending.window = WindowRecord(
            seq=seq,
            stage_index=doc.stage_index,
            status=doc.status,
            started_at=utc(doc.window_started_at or now),
            ended_at=utc(now),
            verdict=result.verdict,
            critical=result.critical,
            reference="control" if control_ids else "baseline",
            reasons=result.reasons,
            checks=result.checks,
            canary=canary,
            control=reference,
            min_samples=doc.guardrails.min_samples,
            scrape_errors={**canary_errors, **control_errors},
            evidence=result.judgement,
            stage_canary_requests=progress.canary_requests,
        )
        doc.window_marks = {i: o.collected_at for i, o in seen.items() if o.collected_at is not None}
        doc.window_started_at = now
        doc.next_window_at = now + doc.monitor.interval_s
        pending.dirty = True
        pending.reschedule(doc.next_window_at)
        if decision.step == "rollback":
            pending.fire(_I.ANALYSIS_FAILED, now, decision.reason, window=seq, code=decision.code)
        elif decision.step == "advance":
            await record_stage_effects(doc, self._observer, now, canary_ids, control_ids)
            pending.fire(
                _I.ANALYSIS_PASSED,
                now,
                None,
                window=seq,
                passing_windows=progress.passing_windows,
                canary_requests=progress.canary_requests,
            )
        elif decision.step == "pause":
            if decision.code == INSUFFICIENT_CANARY_TRAFFIC:
                pending.fire(
                    _I.INCONCLUSIVE_TOO_LONG,
                    now,
                    INSUFFICIENT_CANARY_TRAFFIC,
                    window=seq,
                    explanation=decision.reason,
                    canary_requests=progress.canary_requests,
                    min_canary_requests=doc.judge_settings.min_canary_requests,
                )
            else:
                pending.fire(_I.INCONCLUSIVE_TOO_LONG, now, decision.reason, window=seq, code=decision.code)
