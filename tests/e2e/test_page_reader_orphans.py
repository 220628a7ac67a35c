"""A `kill -9` of the agent takes its page-reader worker with it.

The worker's task queue holds both ends of its pipe, so without a watch it would never see the
agent go and would live on, holding the agent's stdout (a supervisor waiting for end-of-file
hangs) and its memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from performance_agent.metrics.page_reader import PARENT_CHECK_INTERVAL_S
from tests.paths import REPO_ROOT

_AGENT_STAND_IN = """
import multiprocessing, sys, time
from performance_agent.metrics.page_reader import ScrapedPageReader
reader = ScrapedPageReader()
reader.start()
while not multiprocessing.active_children():
    time.sleep(0.05)
print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_exits_when_the_agent_is_killed() -> None:
    agent = subprocess.Popen(
        [sys.executable, "-c", _AGENT_STAND_IN],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert agent.stdout is not None
        workers = [int(pid) for pid in agent.stdout.readline().split()]
        assert workers
        assert all(_alive(pid) for pid in workers)
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        deadline = time.monotonic() + 20 * PARENT_CHECK_INTERVAL_S
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "the page reader outlived the agent"
        assert agent.stdout.read() == "", "nothing else holds the agent's stdout"
    finally:
        if agent.poll() is None:
            agent.kill()
