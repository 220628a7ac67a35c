"""The caches behind fast analyses always answer what a fresh read of storage would, on both repositories.

Every scenario compares the cache's answer with the same figures computed from scratch
(`SloTimeline.of` over freshly decoded snapshots, `aggregate_window` over `raw_between`) after
the history changed under it: new scrapes, a moving window start, a scrape stored out of
order, pruning, and an instance deleted and registered again with different history.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
import pytest

from performance_agent.analysis.slo_history import SloHistory
from performance_agent.analysis.slo_timeline import OBJECTIVES, SloTimeline
from performance_agent.analysis.window import decode_scrape_figures, timeline
from performance_agent.analysis.window_history import WindowHistory
from performance_agent.metrics.builder import (
    RawScrape,
    aggregate_steps,
    aggregate_window,
    encode_raw_scrape,
    scrape_step,
)
from performance_agent.metrics.snapshot import (
    CumulativeHistogram,
    Errors,
    InstanceSnapshot,
    Latency,
    Quantiles,
    RawSeries,
)
from tests.unit.storage_support import Repos, full_spec, run_with_repos

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KINDS = ["memory", "sqlite"]
_encoder = msgspec.json.Encoder()


def _raw(at: datetime, requests: float, start: float, model: str | None = None) -> RawScrape:
    series = RawSeries(
        counters={"requests_finished": requests, "generation_tokens": requests * 40},
        histograms={
            "ttft_s": CumulativeHistogram(
                buckets=[(0.1, requests * 0.6), (1.0, requests * 0.9), (math.inf, requests)],
                sum=requests * 0.21,
                count=requests,
            )
        },
        gauges={"requests_running": 3.0},
        process_start_time_s=start,
    )
    return RawScrape(collected_at=at, total=series, models={model: series} if model else {})


async def _store(repos: Repos, instance_id: str, at: datetime, ttft: float, requests: float,
                 start: float = T0.timestamp() - 600, model: str | None = None) -> None:  # fmt: skip
    snapshot = InstanceSnapshot(
        instance_id=instance_id,
        engine="vllm",
        endpoint="http://127.0.0.1:9",
        collected_at=at,
        window_s=15.0,
        latency=Latency(ttft_s=Quantiles(p95=ttft / 2, p99=ttft)),
        errors=Errors(error_rate=0.0),
        model_name=model,
    )
    raw = _raw(at, requests, start, model)
    assert await repos.snapshots.add(instance_id, at, _encoder.encode(snapshot), encode_raw_scrape(raw))


def _columns(line: SloTimeline) -> list[object]:
    return [list(line.ends_us), list(line.durations_us)] + [
        [line.value(k, i) for i in range(len(line))] for k in range(len(OBJECTIVES))
    ]


async def _fresh_timeline(repos: Repos, instance_id: str, since: datetime, model: str | None = None) -> SloTimeline:
    documents = await repos.snapshots.history_json(instance_id, since, 10**9)
    return SloTimeline.of(timeline((decode_scrape_figures(d) for d in documents), "vllm", model))


@pytest.mark.parametrize("kind", KINDS)
def test_the_slo_time_line_follows_every_change_of_the_history(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        created = await repos.instances.create("a", full_spec(), T0)
        cache = SloHistory(capacity=4)
        for index in range(40):
            await _store(repos, "a", T0 + timedelta(seconds=15 * index), 0.3 if index % 4 else 3.0, 10.0 * index)

        async def agrees(since: datetime) -> None:
            held = await cache.timeline(repos.snapshots, "a", created.created_at, since)
            assert _columns(held) == _columns(await _fresh_timeline(repos, "a", since))

        await agrees(T0)
        await agrees(T0 + timedelta(seconds=100))  # the period start moved on
        for index in range(40, 45):
            await _store(repos, "a", T0 + timedelta(seconds=15 * index), 2.5, 10.0 * index)
        await agrees(T0 + timedelta(seconds=100))
        await _store(repos, "a", T0 + timedelta(seconds=202), 9.0, 1.0)  # out of order: older than the newest
        await agrees(T0 + timedelta(seconds=100))
        assert await repos.snapshots.prune(T0 + timedelta(seconds=300)) > 0
        await agrees(T0 + timedelta(seconds=100))  # the period reaches before the pruned rows
        await agrees(T0 + timedelta(seconds=50))  # an earlier start than anything held: read again
        assert len(cache) == 1

    run_with_repos(kind, tmp_path / "a.db", body)


@pytest.mark.parametrize("kind", KINDS)
def test_a_re_registered_instance_never_sees_its_former_history(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        first = await repos.instances.create("a", full_spec(), T0)
        cache = SloHistory()
        await _store(repos, "a", T0 + timedelta(seconds=15), 0.3, 10.0)
        old = await cache.timeline(repos.snapshots, "a", first.created_at, T0)
        assert await repos.instances.delete("a")
        second = await repos.instances.create("a", full_spec(), T0 + timedelta(hours=1))
        await _store(repos, "a", T0 + timedelta(seconds=15), 4.0, 10.0)  # same stamp, other figures

        new = await cache.timeline(repos.snapshots, "a", second.created_at, T0)
        assert (old.value(0, 0), new.value(0, 0)) == (0.3, 4.0)

    run_with_repos(kind, tmp_path / "a.db", body)


@pytest.mark.parametrize("kind", KINDS)
def test_the_window_sums_equal_a_fresh_aggregate_through_restarts_and_late_rows(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        created = await repos.instances.create("a", full_spec(), T0)
        cache = WindowHistory(capacity=2)
        for index in range(30):
            restarted = index >= 20  # counters drop and the counting start moves: a restart inside the window
            requests = 7.0 * (index - 20) + 3 if restarted else 11.0 * index
            start = T0.timestamp() + (290 if restarted else -600)
            await _store(repos, "a", T0 + timedelta(seconds=15 * index), 0.3, requests, start, model="m")

        async def agrees(since_s: float, until_s: float, model: str | None = None) -> None:
            since, until = T0 + timedelta(seconds=since_s), T0 + timedelta(seconds=until_s)
            window = await cache.window(repos.snapshots, "a", created.created_at, since, until, model)
            raws = await repos.snapshots.raw_between("a", since, until)
            assert [r.collected_at for r in window.raws] == [r.collected_at for r in raws]
            assert window.aggregated == aggregate_window(raws, model_name=model)

        await agrees(0, 450)
        await agrees(60, 600)
        await agrees(60, 600, "m")
        await agrees(60, 300)  # `until` before the newest held
        await _store(repos, "a", T0 + timedelta(seconds=457), 0.3, 500.0)  # stored late, older than the newest
        await agrees(60, 600)
        for index in range(30, 33):
            await _store(repos, "a", T0 + timedelta(seconds=15 * index), 0.3, 100.0 + index)
        await agrees(200, 1000)
        await agrees(2000, 3000)  # nothing in the window
        assert await repos.instances.delete("a")
        await agrees(200, 1000)  # the history went with the instance

    run_with_repos(kind, tmp_path / "a.db", body)


def test_windows_longer_than_the_limit_are_answered_but_not_kept(tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        created = await repos.instances.create("a", full_spec(), T0)
        cache = WindowHistory(max_held=5)
        for index in range(8):
            await _store(repos, "a", T0 + timedelta(seconds=15 * index), 0.3, 10.0 * index)
        window = await cache.window(repos.snapshots, "a", created.created_at, T0, T0 + timedelta(minutes=5))
        assert len(window.raws) == 8
        assert window.aggregated == aggregate_window(window.raws)
        assert len(cache) == 0

    run_with_repos("memory", tmp_path / "a.db", body)


def test_summed_steps_equal_the_window_aggregate() -> None:
    raws = [_raw(T0 + timedelta(seconds=15 * i), 10.0 * i + (i % 3) * 0.1, T0.timestamp() - 60) for i in range(12)]
    steps = [scrape_step(a, b) for a, b in itertools.pairwise(raws)]

    assert aggregate_steps(raws[0], raws[-1], steps) == aggregate_window(raws)
    assert aggregate_steps(raws[0], raws[0], []).instances == 0


@pytest.mark.parametrize("kind", KINDS)
def test_history_after_counts_what_a_reader_holds_and_returns_what_is_newer(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await repos.instances.create("a", full_spec(), T0)
        for index in range(5):
            await _store(repos, "a", T0 + timedelta(seconds=10 * index), 0.3, float(index))
        held_until = (T0 + timedelta(seconds=20)).timestamp()
        since = T0 + timedelta(seconds=10)

        everything = await repos.snapshots.history_after("a", since, None)
        delta = await repos.snapshots.history_after("a", since, held_until)
        raws = await repos.snapshots.raw_after("a", since, held_until)

        stamps = [(T0 + timedelta(seconds=s)).timestamp() for s in (10, 20, 30, 40)]
        assert [stamp for stamp, _ in everything.newer] == stamps
        assert everything.known == 0
        assert delta.known == 2
        assert [stamp for stamp, _ in delta.newer] == stamps[2:]
        assert decode_scrape_figures(delta.newer[0][1]).collected_at == T0 + timedelta(seconds=30)
        assert (raws.known, [stamp for stamp, _ in raws.newer]) == (2, [stamp for stamp, _ in delta.newer])

    run_with_repos(kind, tmp_path / "a.db", body)
