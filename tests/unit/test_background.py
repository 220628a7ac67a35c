"""Supervised loops: a crash is logged and restarted, a stalled loop is reported, stop cancels."""

from __future__ import annotations

import asyncio

import pytest

from performance_agent.background import BackgroundLoops, Heartbeat


def test_a_crashing_loop_is_restarted_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[int, bool]:
        loops = BackgroundLoops(restart_delay_s=0.0)
        runs = 0

        async def flaky(beat: Heartbeat) -> None:
            nonlocal runs
            runs += 1
            beat()
            if runs < 3:
                raise RuntimeError("boom")
            await asyncio.sleep(3600)

        loops.start("flaky", flaky, stale_after_s=60)
        for _ in range(100):
            await asyncio.sleep(0)
            if runs >= 3:
                break
        report = loops.report()[0]
        await loops.stop()
        return report.restarts, report.alive

    restarts, alive = asyncio.run(scenario())
    assert restarts == 2
    assert alive


def test_a_loop_without_heartbeats_is_reported_stalled() -> None:
    async def scenario() -> bool:
        loops = BackgroundLoops()

        async def silent(beat: Heartbeat) -> None:
            await asyncio.sleep(3600)

        loops.start("silent", silent, stale_after_s=0.01)
        await asyncio.sleep(0.05)
        alive = loops.report()[0].alive
        await loops.stop()
        return alive

    assert asyncio.run(scenario()) is False


def test_a_finished_loop_is_not_alive_and_stop_clears_the_report() -> None:
    async def scenario() -> tuple[bool, int]:
        loops = BackgroundLoops()

        async def once(beat: Heartbeat) -> None:
            beat()

        loops.start("once", once, stale_after_s=60)
        await asyncio.sleep(0.01)
        alive = loops.report()[0].alive
        await loops.stop()
        return alive, len(loops.report())

    assert asyncio.run(scenario()) == (False, 0)
