"""With background collection on, baselines and health windows start on the collector's stored readings.

The collector is played by hand (`collect`: a scrape of each instance through the agent's
collection service, stamped by the shared manual clock), so a mark equal to a collection time
is a reused reading and a mark equal to the reconciler's own clock is a scrape it took itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.simulator.fleet import ManualClock, start_simulator
from tests.rollout_support import ReconcilerHarness, WebhookReceiver, fleet_forwarder

if TYPE_CHECKING:
    from collections.abc import Iterator

    from performance_agent.simulator.fleet import SimulatedFleet
    from performance_agent.workflows.state import WorkflowDoc

INTERVAL_S = 15.0
WARMUP_S = 20.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fleet(clock: ManualClock) -> Iterator[SimulatedFleet]:
    with start_simulator("vllm", 2, clock=clock) as running:
        clock.advance(120)
        yield running


@pytest.fixture
def receiver(fleet: SimulatedFleet) -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(forward=fleet_forwarder(fleet)).start()
    yield started
    started.stop()


def _body(ids: list[str], url: str) -> dict[str, Any]:
    return {
        "instance_ids": ids,
        "changes": {"max_num_seqs": 128},
        "actuator": {"type": "webhook", "url": url},
        "monitor": {"duration_s": 600, "interval_s": INTERVAL_S, "warmup_s": WARMUP_S},
    }


async def collect(harness: ReconcilerHarness, instance_ids: list[str]) -> float:
    """What the background collector does for these instances: scrape and store; returns the time."""
    for instance_id in instance_ids:
        stored = await harness.agent.storage.instances.get(instance_id)
        assert stored is not None
        await harness.agent.collection.scrape(stored, timeout_s=5.0)
    return harness.clock()


async def doc_of(harness: ReconcilerHarness, workflow_id: str) -> WorkflowDoc:
    stored = await harness.workflows.get(workflow_id)
    assert stored is not None
    return stored.doc


def _harness(clock: ManualClock) -> ReconcilerHarness:
    return ReconcilerHarness(clock, scrape_background=True, workflow_max_reading_age_s=INTERVAL_S)


class Run:
    """A rollout driven to its first health window: its id, the collection times, how its baseline started."""

    def __init__(self, workflow_id: str, collections: list[float]) -> None:
        self.workflow_id = workflow_id
        self.collections = collections
        self.baseline_marks: dict[str, float] = {}
        self.baseline_started_at: float | None = None


async def _to_first_window(
    harness: ReconcilerHarness, fleet: SimulatedFleet, url: str, *, collect_ids: list[str] | None = None
) -> Run:
    """Start a rollout with the collector reading every interval; tick each second until its first window opened.

    `collect_ids` limits what the collector reads once the workflow is monitoring (default: all).
    """
    ids = await harness.register_fleet(fleet)
    collections = [await collect(harness, ids)]
    workflow_id = (await harness.start(_body(ids, url))).workflow_id
    run = Run(workflow_id, collections)
    for _ in range(200):
        doc = await doc_of(harness, workflow_id)
        if not run.baseline_marks and doc.baseline_marks:
            run.baseline_marks, run.baseline_started_at = dict(doc.baseline_marks), doc.baseline_started_at
        if doc.window_started_at is not None:
            return run
        if harness.clock() - collections[-1] >= INTERVAL_S:
            monitoring = doc.status == "monitoring"
            collections.append(await collect(harness, collect_ids if monitoring and collect_ids is not None else ids))
        await harness.step(1.0)
    raise AssertionError(f"no health window opened: {doc.status} {doc.status_reason}")


def test_baseline_and_first_window_start_on_the_collectors_readings(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with _harness(clock) as harness:
            run = await _to_first_window(harness, fleet, receiver.url)
            collections = run.collections
            doc = await doc_of(harness, run.workflow_id)
            # The baseline started on the collector's reading, not on a scrape when the workflow was picked up.
            assert run.baseline_marks == dict.fromkeys(doc.instance_ids, collections[0])
            progress = doc.progress
            assert progress is not None
            assert doc.window_started_at is not None
            # The first window waited one reuse age past the warm-up and started on the reading taken after it.
            assert doc.window_started_at == progress.warmup_until + INTERVAL_S
            after_warmup = min(stamp for stamp in collections if stamp > progress.warmup_until)
            assert doc.window_marks == dict.fromkeys(doc.instance_ids, after_warmup)
            assert after_warmup < doc.window_started_at

    asyncio.run(scenario())


def test_an_instance_the_collector_missed_after_the_warmup_is_scraped_when_the_window_opens(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with _harness(clock) as harness:
            run = await _to_first_window(harness, fleet, receiver.url, collect_ids=["vllm-0"])
            doc = await doc_of(harness, run.workflow_id)
            assert doc.progress is not None
            assert doc.window_started_at is not None
            after_warmup = min(stamp for stamp in run.collections if stamp > doc.progress.warmup_until)
            assert doc.window_marks == {"vllm-0": after_warmup, "vllm-1": doc.window_started_at}

    asyncio.run(scenario())


def test_without_background_collection_windows_open_at_the_end_of_the_warmup_on_a_scrape(
    clock: ManualClock, fleet: SimulatedFleet, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        async with ReconcilerHarness(clock) as harness:
            run = await _to_first_window(harness, fleet, receiver.url)
            doc = await doc_of(harness, run.workflow_id)
            assert run.baseline_marks == dict.fromkeys(doc.instance_ids, run.baseline_started_at)
            assert doc.progress is not None
            assert doc.window_started_at == doc.progress.warmup_until
            assert doc.window_marks == dict.fromkeys(doc.instance_ids, doc.window_started_at)

    asyncio.run(scenario())
