"""What the judgement endpoints do: validate a request into a stored judgement, read it, stop it, answer Flagger.

The judging itself happens in the background (`runner.JudgementRunner`), so every request here
is a small database read or write and answers at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.clock import utc
from performance_agent.errors import ApiError, ConflictError, ErrorDetail, NotFoundError, RequestValidationError
from performance_agent.judge import JudgeSettings
from performance_agent.judgements.ports import JudgementVersionConflict
from performance_agent.judgements.schemas import FlaggerCheck, Judgement
from performance_agent.judgements.state import JudgementDoc, final_verdict
from performance_agent.workflows.policy import Guardrails, resolve_guardrails, resolve_judge

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.judgements.ports import JudgementRepository, StoredJudgement
    from performance_agent.judgements.schemas import JudgementCreate
    from performance_agent.workflows.validation import CreateDefaults

__all__ = ("DEFAULT_MAX_DURATION_S", "JudgementDefaults", "JudgementFailed", "JudgementService", "to_view")

#: How long a judgement runs when the request names no `max_duration_s`.
DEFAULT_MAX_DURATION_S = 3600.0


class JudgementFailed(ApiError):
    """The Flagger hook's answer once the canary failed: any non-2xx makes Flagger count a failed check."""

    status_code = 409
    error = "judgement_failed"


@dataclass(frozen=True, slots=True)
class JudgementDefaults:
    """The workflow defaults a judgement falls back to (same settings, same judge)."""

    guardrails: Guardrails
    interval_s: float
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    max_duration_s: float = DEFAULT_MAX_DURATION_S

    @classmethod
    def of_workflows(cls, defaults: CreateDefaults) -> JudgementDefaults:
        """The same guardrails, judge and window interval as a rollout would get."""
        return cls(guardrails=defaults.guardrails, judge=defaults.judge, interval_s=defaults.monitor.interval_s)


def to_view(stored: StoredJudgement) -> Judgement:
    doc = stored.doc
    return Judgement(
        judgement_id=doc.judgement_id,
        status=doc.status,
        verdict=doc.verdict,
        ok=doc.ok,
        reason=doc.reason,
        canary_instance_ids=list(doc.canary_instance_ids),
        control_instance_ids=list(doc.control_instance_ids),
        interval_s=doc.interval_s,
        max_duration_s=doc.max_duration_s,
        guardrails=doc.guardrails,
        judge=doc.judge,
        created_by=doc.created_by,
        created_at=utc(doc.created_at),
        updated_at=utc(doc.updated_at),
        ends_at=utc(doc.ends_at),
        finished_at=None if doc.finished_at is None else utc(doc.finished_at),
        windows=doc.windows,
        inconclusive_windows=doc.inconclusive_windows,
        canary_requests=doc.canary_requests,
        control_requests=doc.control_requests,
        scrape_errors=dict(doc.scrape_errors),
        evidence=doc.evidence,
    )


def finish(doc: JudgementDoc, now: float, why: str) -> None:
    """Stop the judgement with its final verdict (see `state.final_verdict`)."""
    verdict, reason = final_verdict(doc)
    doc.status = "finished"
    doc.verdict = verdict
    doc.reason = f"{why}: {reason}" if verdict != "fail" else reason
    doc.finished_at = now
    doc.updated_at = now
    doc.next_due_at = None


def _cohort_problems(body: JudgementCreate, registered: set[str]) -> list[ErrorDetail]:
    problems: list[ErrorDetail] = []
    for name, ids in (
        ("canary_instance_ids", body.canary_instance_ids),
        ("control_instance_ids", body.control_instance_ids),
    ):
        if len(set(ids)) != len(ids):
            problems.append(ErrorDetail(field=f"body.{name}", message="must not repeat an instance", type="invalid"))
        unknown = sorted({i for i in ids if i not in registered})
        if unknown:
            problems.append(
                ErrorDetail(field=f"body.{name}", message=f"not registered: {', '.join(unknown)}", type="invalid")
            )
    both = sorted(set(body.canary_instance_ids) & set(body.control_instance_ids))
    if both:
        problems.append(
            ErrorDetail(
                field="body.control_instance_ids",
                message=f"an instance cannot be canary and control: {', '.join(both)}",
                type="invalid",
            )
        )
    return problems


class JudgementService:
    def __init__(
        self,
        *,
        judgements: JudgementRepository,
        instances: InstanceRepository,
        defaults: JudgementDefaults,
        clock: Callable[[], float],
    ) -> None:
        self._judgements = judgements
        self._instances = instances
        self._defaults = defaults
        self._clock = clock

    async def _require(self, judgement_id: str) -> StoredJudgement:
        stored = await self._judgements.get(judgement_id)
        if stored is None:
            raise NotFoundError(f"No judgement {judgement_id!r}.", context={"judgement_id": judgement_id})
        return stored

    async def create(self, body: JudgementCreate, *, actor: str) -> Judgement:
        """422 naming every problem: repeated, unregistered or shared instances."""
        wanted = {*body.canary_instance_ids, *body.control_instance_ids}
        registered = {i for i in wanted if await self._instances.get(i) is not None}
        problems = _cohort_problems(body, registered)
        if problems:
            summary = "; ".join(f"{d.field}: {d.message}" for d in problems)
            raise RequestValidationError(f"The judgement cannot be started: {summary}", problems)
        now = self._clock()
        defaults = self._defaults
        doc = JudgementDoc(
            judgement_id=str(uuid.uuid4()),
            canary_instance_ids=list(body.canary_instance_ids),
            control_instance_ids=list(body.control_instance_ids),
            interval_s=body.interval_s if body.interval_s is not None else defaults.interval_s,
            max_duration_s=body.max_duration_s if body.max_duration_s is not None else defaults.max_duration_s,
            guardrails=resolve_guardrails(body.guardrails, defaults.guardrails),
            judge=resolve_judge(body.judge, body.guardrails, defaults.judge),
            created_by=actor,
            created_at=now,
            updated_at=now,
            next_due_at=now,
        )
        return to_view(await self._judgements.create(doc))

    async def get(self, judgement_id: str) -> Judgement:
        return to_view(await self._require(judgement_id))

    async def stop(self, judgement_id: str) -> Judgement:
        """Stop a running judgement with its final verdict; 409 `judgement_finished` when it already stopped."""
        for _ in range(3):  # the background loop may be writing the same judgement: re-read and decide again
            stored = await self._require(judgement_id)
            doc = stored.doc
            if doc.status != "running":
                raise ConflictError(
                    f"Judgement {judgement_id} already finished ({doc.verdict}).",
                    error="judgement_finished",
                    context={"judgement_id": judgement_id, "verdict": doc.verdict},
                )
            finish(doc, self._clock(), "stopped by DELETE")
            try:
                version = await self._judgements.save(doc, stored.version)
            except JudgementVersionConflict:
                continue
            return to_view(type(stored)(doc=doc, version=version))
        raise ConflictError(f"Judgement {judgement_id} kept changing; retry.", context={"judgement_id": judgement_id})

    async def flagger(self, judgement_id: str) -> FlaggerCheck:
        """2xx while the canary has not failed; `judgement_failed` (409) once it has."""
        doc = (await self._require(judgement_id)).doc
        if not doc.ok:
            raise JudgementFailed(
                f"Judgement {judgement_id} failed: {doc.reason}",
                context={"judgement_id": judgement_id, "verdict": doc.verdict},
            )
        return FlaggerCheck(judgement_id=doc.judgement_id, verdict=doc.verdict, ok=True)
