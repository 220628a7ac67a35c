"""Alertmanager's API v2 client: alerts POSTed to `<base>/api/v2/alerts`, batched, retried, through the guard.

Alertmanager resolves an alert whose `endsAt` has passed, so a sender keeps a firing alert alive
by posting it again before then (Prometheus re-sends on every rule evaluation with `endsAt` four
resend intervals ahead; Prometheus `rules/alerting.go`, `Alert.needsSending` and `ValidUntil`).
Why a pending map rather than a queue: each evaluation hands over the current state of its
alerts, and only the newest state of each alert (by its key, the label fingerprint) is worth
sending, so a slow Alertmanager costs at most one entry per alert, never an ever-growing queue.
Why failures are dropped after the retries: the next evaluation sends the alert again, and a lost
resolution expires at Alertmanager by its `endsAt` within a few intervals.
The body of each alert comes encoded from the caller (this package knows no alert semantics);
Alertmanager's answers are read up to a byte cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import httpx

from performance_agent.outbound.pinned import TlsOptions, pinned_to
from performance_agent.outbound.retry import guarded_target, with_backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from performance_agent.outbound.pinned import PinnedClients
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist

__all__ = ("ALERTS_PATH", "AlertmanagerClient", "alerts_url")

logger = logging.getLogger("performance_agent.outbound.alertmanager")

ALERTS_PATH = "/api/v2/alerts"
#: Alerts per POST (Prometheus's notifier sends at most 64 per request, `notifier.maxBatchSize`).
BATCH_SIZE = 64


def alerts_url(base_url: str) -> str:
    """The alerts endpoint under Alertmanager's base URL (which may carry a path prefix)."""
    return base_url.rstrip("/") + ALERTS_PATH


class AlertmanagerClient:
    """Sends the newest state of each submitted alert; `run` is its supervised loop."""

    def __init__(
        self,
        base_url: str,
        *,
        clients: PinnedClients,
        allowlist: TargetAllowlist,
        resolver: Resolver,
        on_outcome: Callable[[str], None],
        resend_interval_s: float,
        resend: Callable[[], Awaitable[Mapping[str, bytes]]] | None = None,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        max_answer_bytes: int = 65536,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._url = alerts_url(base_url)
        self._clients = clients
        self._allowlist = allowlist
        self._resolver = resolver
        self._on_outcome = on_outcome
        self._resend_interval_s = resend_interval_s
        self._resend = resend
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._max_answer_bytes = max_answer_bytes
        self._sleep = sleep
        self._pending: dict[str, bytes] = {}
        self._wake = asyncio.Event()

    @property
    def url(self) -> str:
        return self._url

    def submit(self, alerts: Mapping[str, bytes]) -> None:
        """Queue alerts (key -> one encoded postable alert); a newer state of the same key replaces the older."""
        if alerts:
            self._pending.update(alerts)
            self._wake.set()

    async def run(self, beat: Callable[[], None]) -> None:
        """Send what is pending as soon as it arrives; every `resend_interval_s`, also what `resend` lists.

        Why the timed resend: evaluation runs after scrapes, so while an instance cannot be
        scraped its firing alert would reach its `endsAt` at Alertmanager and resolve there,
        though the agent still holds it firing.
        """
        loop = asyncio.get_running_loop()
        next_resend = loop.time() + self._resend_interval_s
        while True:
            beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(10.0, next_resend - loop.time())))
            if self._resend is not None and loop.time() >= next_resend:
                next_resend = loop.time() + self._resend_interval_s
                self.submit(await self._resend())
            await self.flush()

    async def flush(self) -> int:
        """Send everything pending now, in batches; returns how many alerts Alertmanager accepted."""
        self._wake.clear()
        pending, self._pending = self._pending, {}
        bodies = list(pending.values())
        accepted = 0
        for start in range(0, len(bodies), BATCH_SIZE):
            batch = bodies[start : start + BATCH_SIZE]
            if await self.deliver(b"[" + b",".join(batch) + b"]"):
                accepted += len(batch)
        return accepted

    async def deliver(self, body: bytes) -> bool:
        """POST one JSON array of alerts, retrying with doubling backoff.

        Not retried: a URL the guard refuses, and a 4xx other than 429 (the same body would be
        rejected again). Each POST's outcome is reported: ok, refused, rejected or failed.
        """
        outcome = await with_backoff(
            lambda: self._post(body), attempts=self._attempts, backoff_s=self._backoff_s, sleep=self._sleep
        )
        self._on_outcome(outcome)
        return outcome == "ok"

    async def _post(self, body: bytes) -> str:
        target = await guarded_target(self._url, self._allowlist, self._resolver, "Alertmanager")
        if isinstance(target, str):
            return target
        client = self._clients.client(TlsOptions())
        try:
            with pinned_to(target):
                async with asyncio.timeout(self._timeout_s):
                    request = client.build_request(
                        "POST",
                        target.url,
                        content=body,
                        headers={"Content-Type": "application/json"},
                        timeout=httpx.Timeout(self._timeout_s),
                    )
                    response = await client.send(request, stream=True)
                    try:
                        answer = await self._read_capped(response)
                    finally:
                        await response.aclose()
        except (TimeoutError, httpx.HTTPError) as exc:
            logger.warning("Alertmanager unreachable", extra={"error": type(exc).__name__})
            return "failed"
        if 200 <= response.status_code < 300:
            return "ok"
        logger.warning(
            "Alertmanager refused the alerts",
            extra={"status": response.status_code, "answer": answer.decode("utf-8", "replace")},
        )
        # A 4xx will not change on retry (a malformed alert); a 5xx or 429 may.
        return "failed" if response.status_code >= 500 or response.status_code == 429 else "rejected"

    async def _read_capped(self, response: httpx.Response) -> bytes:
        kept = bytearray()
        async for chunk in response.aiter_raw():
            kept += chunk[: self._max_answer_bytes - len(kept)]
            if len(kept) >= self._max_answer_bytes:
                break
        return bytes(kept)
