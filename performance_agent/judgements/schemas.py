"""Request and response bodies of `/api/v1/judgements`.

The request is strict (an unknown or misspelt field is a 422), and every block but the two
cohorts is optional with the workflow defaults: a judgement is judged by exactly the rules a
workflow with the same `guardrails` and `judge` blocks would be. The Flagger hook's body is the
one exception to strictness: it is Flagger's payload, not ours, and a new Flagger field must
not turn a healthy canary's check into a failure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from performance_agent.judge import JudgeSettings, WindowJudgement
from performance_agent.workflows.policy import Guardrails
from performance_agent.workflows.schemas import GuardrailSpec, InstanceId, JudgeSpec, Seconds

__all__ = (
    "FlaggerCheck",
    "FlaggerHook",
    "Judgement",
    "JudgementCreate",
    "JudgementSetup",
    "JudgementStatus",
    "JudgementVerdict",
)

JudgementVerdict = Literal["running", "pass", "fail", "inconclusive"]
JudgementStatus = Literal["running", "finished"]
CohortIds = Annotated[list[InstanceId], Meta(min_length=1, max_length=10_000)]


class JudgementCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Two cohorts of registered instances; the canary is judged against the control every `interval_s`."""

    canary_instance_ids: CohortIds
    control_instance_ids: CohortIds
    interval_s: Seconds | None = None
    guardrails: GuardrailSpec | None = None
    judge: JudgeSpec | None = None
    max_duration_s: Seconds | None = None


class FlaggerHook(msgspec.Struct, kw_only=True):
    """What Flagger posts to a webhook (`name`, `namespace`, `phase`, `checksum`, `metadata`); only logged."""

    name: Annotated[str, Meta(max_length=253)] | None = None
    namespace: Annotated[str, Meta(max_length=253)] | None = None
    phase: Annotated[str, Meta(max_length=64)] | None = None
    checksum: Annotated[str, Meta(max_length=256)] | None = None
    metadata: dict[str, Any] | None = None


class FlaggerCheck(msgspec.Struct, kw_only=True):
    """The 2xx answer of the Flagger hook while the canary has not failed (Flagger reads only the status)."""

    judgement_id: str
    verdict: JudgementVerdict
    ok: bool


class JudgementSetup(msgspec.Struct, kw_only=True):
    """What a judgement was started with, resolved against the defaults: shown by the API and stored."""

    judgement_id: str
    canary_instance_ids: list[str]
    control_instance_ids: list[str]
    interval_s: float
    max_duration_s: float
    guardrails: Guardrails
    judge: JudgeSettings
    created_by: str


class Judgement(JudgementSetup, kw_only=True):
    """A judgement's current state. `ok` is false only once the canary failed: use it as the pass signal.

    `verdict` is `running` until the judgement stops (by `DELETE` or after `max_duration_s`), then
    `pass` (never failed and the canary served `judge.min_canary_requests` requests in all) or
    `inconclusive` (too little canary traffic to tell, or every window unreadable); `fail` as
    soon as the evidence crossed the threshold or an absolute limit was breached, and it stays.
    """

    status: JudgementStatus
    verdict: JudgementVerdict
    ok: bool
    reason: str | None
    created_at: datetime
    updated_at: datetime
    ends_at: datetime
    finished_at: datetime | None
    windows: int
    inconclusive_windows: int
    canary_requests: float
    control_requests: float
    scrape_errors: dict[str, str]
    evidence: WindowJudgement | None
