"""The background loop that judges every running judgement, window by window, with the workflow judge.

Level-triggered like the workflow reconciler: each tick loads the running judgements whose next
window is due, reads both cohorts (the collector's stored readings when fresh enough, else a
scrape: `workflows.observer`), adds the window to the judge's evidence and saves the document
under the version it read. Nothing lives only in memory, so a restarted agent continues every
judgement from what is stored.

The judge needs a reference shape to fix its edges and margins (`plan_margins`); a judgement has
no pre-rollout baseline, so the control cohort's first window provides it. That window is not
judged (its control requests would otherwise count twice): judging starts with the second.

With several replicas on one database each tick claims the due judgements it judges and
releases them after, so each is judged by one replica at a time (see `storage.claims`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from performance_agent.judge import JudgeState, Tolerances, judge_window, plan_margins
from performance_agent.judgements.ports import JudgementVersionConflict
from performance_agent.judgements.service import finish
from performance_agent.metrics.builder import cohort_counts

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from performance_agent.background import Heartbeat
    from performance_agent.judgements.ports import JudgementRepository
    from performance_agent.judgements.state import JudgementDoc
    from performance_agent.replicas.lease import Claimant
    from performance_agent.workflows.observer import CohortObserver, Observation

__all__ = ("JudgementRunner",)

logger = logging.getLogger("performance_agent.judgements.runner")


class JudgementRunner:
    def __init__(
        self,
        *,
        judgements: JudgementRepository,
        observer: CohortObserver,
        clock: Callable[[], float],
        claimant: Claimant,
        slo_targets: Callable[[Sequence[str]], Awaitable[dict[str, float]]] | None = None,
        tick_s: float = 1.0,
        batch: int = 500,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._judgements = judgements
        self._observer = observer
        self._clock = clock
        self._claimant = claimant
        self._slo_targets = slo_targets
        self._tick_s = tick_s
        self._batch = batch
        self._sleep = sleep

    async def run(self, beat: Heartbeat) -> None:
        """The loop body for `BackgroundLoops.start`."""
        while True:
            beat()
            await self.tick()
            await self._sleep(self._tick_s)

    async def tick(self) -> list[str]:
        """Claim and judge every judgement that is due now and free; returns their ids."""
        claimant = self._claimant
        due = await self._judgements.claim_due(
            self._clock(), self._batch, holder=claimant.replica_id, ttl_s=claimant.ttl_s
        )
        try:
            for judgement_id in due:
                try:
                    await self.process(judgement_id)
                except JudgementVersionConflict:
                    logger.info("judgement changed while judged; retrying next tick", extra={"judgement": judgement_id})
                except Exception:
                    logger.exception("judgement processing failed", extra={"judgement": judgement_id})
        finally:
            await self._judgements.release_claims(due, claimant.replica_id)
        return due

    async def process(self, judgement_id: str) -> None:
        stored = await self._judgements.get(judgement_id)
        if stored is None or stored.doc.status != "running":
            return
        doc = stored.doc
        now = self._clock()
        if doc.next_due_at is not None and doc.next_due_at > now:
            return
        if now >= doc.ends_at:
            finish(doc, now, f"max_duration_s ({doc.max_duration_s:g} s) reached")
            await self._judgements.save(doc, stored.version)
            return
        members = [*doc.canary_instance_ids, *doc.control_instance_ids]
        seen = await self._observer.observe(members, now=now, interval_s=doc.interval_s, after=doc.marks)
        if doc.window_started_at is not None:
            await self._judge(doc, now, seen)
        if doc.status == "running":
            doc.marks = {i: o.collected_at for i, o in seen.items() if o.collected_at is not None}
            doc.window_started_at = now
            doc.next_due_at = min(now + doc.interval_s, doc.ends_at)
        doc.updated_at = now
        await self._judgements.save(doc, stored.version)

    async def _judge(self, doc: JudgementDoc, now: float, seen: dict[str, Observation]) -> None:
        canary_series, canary_errors = await self._observer.series(doc.canary_instance_ids, doc.marks, seen)
        control_series, control_errors = await self._observer.series(doc.control_instance_ids, doc.marks, seen)
        doc.windows += 1
        doc.scrape_errors = {**canary_errors, **control_errors}
        if canary_errors or control_errors:
            doc.inconclusive_windows += 1
            if canary_errors and doc.guardrails.on_canary_scrape_error == "fail":
                doc.canary_scrape_failures += 1
                if doc.canary_scrape_failures >= doc.guardrails.consecutive_failures:
                    failed = ", ".join(f"{i} ({code})" for i, code in sorted(canary_errors.items()))
                    doc.verdict = "fail"
                    doc.reason = f"{doc.canary_scrape_failures} consecutive windows without the canary: {failed}"
                    finish(doc, now, "canary unreadable")
            return
        doc.canary_scrape_failures = 0
        canary, control = cohort_counts(canary_series), cohort_counts(control_series)
        if doc.plan is None:
            targets = await self._slo_targets(doc.canary_instance_ids) if self._slo_targets is not None else {}
            doc.plan = plan_margins(control, Tolerances.from_guardrails(doc.guardrails, targets), doc.judge)
            doc.state = JudgeState()
            return
        doc.state, judgement = judge_window(doc.state or JudgeState(), doc.plan, canary, control)
        doc.canary_requests += canary.requests
        doc.control_requests += control.requests
        doc.evidence = judgement
        if judgement.decision == "rollback":
            doc.verdict = "fail"
            doc.reason = "; ".join(judgement.reasons)
            finish(doc, now, "the canary failed")
