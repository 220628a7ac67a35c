"""Outbound POSTs that report an outcome: the guard check as an outcome, and one retry policy.

Outcomes are words the callers count in their metrics: "ok", "refused" (the target guard said
no; never retried), "failed" (transport, timeout, 5xx; retried), and caller-specific final ones.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from performance_agent.outbound.target_guard import ResolutionError, TargetRefusedError, check_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from performance_agent.outbound.target_guard import ResolvedTarget, Resolver, TargetAllowlist

__all__ = ("RETRYABLE", "guarded_target", "with_backoff")

logger = logging.getLogger("performance_agent.outbound")

#: The one outcome worth another attempt (transport errors, timeouts, 5xx); every other is final.
RETRYABLE = "failed"


async def with_backoff(
    attempt_once: Callable[[], Awaitable[str]],
    *,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], Awaitable[None]],
) -> str:
    """The first final outcome (`ok`, `refused`, ...), or "failed" after `attempts` tries waiting backoff_s x 2^n."""
    outcome = RETRYABLE
    for attempt in range(attempts):
        outcome = await attempt_once()
        if outcome != RETRYABLE:
            return outcome
        if attempt + 1 < attempts:
            await sleep(backoff_s * 2**attempt)
    return outcome


async def guarded_target(url: str, allowlist: TargetAllowlist, resolver: Resolver, what: str) -> ResolvedTarget | str:
    """The checked target, or the outcome when there is none: "refused" by the guard, "failed" to resolve.

    `what` names the caller in the log ("alert webhook", "Alertmanager").
    """
    try:
        return await check_url(url, allowlist, resolver)
    except TargetRefusedError as refused:
        logger.error("%s URL refused by the target guard", what, extra={"reason": refused.reason})
        return "refused"
    except ResolutionError as unresolved:
        logger.warning("%s host does not resolve", what, extra={"error": str(unresolved)})
        return RETRYABLE
