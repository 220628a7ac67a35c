"""One retry policy for outbound POSTs that report an outcome: try again on "failed", with doubling waits."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("RETRYABLE", "with_backoff")

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
