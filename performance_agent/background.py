"""Supervised background loops (collector, alert evaluation, rollout reconciler).

Each loop reports a heartbeat; a loop that raises is logged and restarted after a pause, so
one bad target or bug never silently stops the agent's work, and `/health/detailed` can tell
a loop that died or hangs from one that is idle between ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

__all__ = ("BackgroundLoops", "Heartbeat", "LoopStatus")

logger = logging.getLogger("performance_agent.background")

Heartbeat = Callable[[], None]


class LoopStatus(msgspec.Struct, kw_only=True):
    name: str
    alive: bool
    seconds_since_heartbeat: float | None
    restarts: int


class _Loop:
    def __init__(self, name: str, body: Callable[[Heartbeat], Awaitable[None]], stale_after_s: float) -> None:
        self.name = name
        self.body = body
        self.stale_after_s = stale_after_s
        self.last_beat: float | None = None
        self.restarts = 0
        self.task: asyncio.Task[None] | None = None

    def beat(self) -> None:
        self.last_beat = time.monotonic()


class BackgroundLoops:
    def __init__(self, restart_delay_s: float = 1.0) -> None:
        self._loops: dict[str, _Loop] = {}
        self._restart_delay_s = restart_delay_s

    def start(self, name: str, body: Callable[[Heartbeat], Awaitable[None]], stale_after_s: float) -> None:
        loop = _Loop(name, body, stale_after_s)
        self._loops[name] = loop
        loop.task = asyncio.create_task(self._supervise(loop), name=f"performance-agent:{name}")

    async def _supervise(self, loop: _Loop) -> None:
        while True:
            loop.beat()
            try:
                await loop.body(loop.beat)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                loop.restarts += 1
                logger.exception("background loop crashed; restarting", extra={"loop": loop.name})
                await asyncio.sleep(self._restart_delay_s)

    def report(self) -> list[LoopStatus]:
        now = time.monotonic()
        statuses = []
        for loop in self._loops.values():
            age = None if loop.last_beat is None else now - loop.last_beat
            running = loop.task is not None and not loop.task.done()
            statuses.append(
                LoopStatus(
                    name=loop.name,
                    alive=running and age is not None and age <= loop.stale_after_s,
                    seconds_since_heartbeat=None if age is None else round(age, 3),
                    restarts=loop.restarts,
                )
            )
        return statuses

    async def stop(self) -> None:
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops.clear()
