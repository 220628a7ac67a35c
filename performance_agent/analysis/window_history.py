"""The analysis window's cumulative series and their scrape-to-scrape steps, kept between analyses.

Why: each analysis sums the increases of every scrape in its window (a restart inside the window
loses nothing), which means decoding every stored series of the window and differencing each
pair. Doing that on every request allocated tens of thousands of short-lived objects whose
garbage collection, not the arithmetic, set the tail latency. Scrapes and their steps never
change once stored, so they are decoded and differenced once and kept: each analysis decodes
only what was stored since the last one and sums the held steps (in the same order, so the
figures are identical to `aggregate_window` over the same scrapes).

The store is checked on every call by `history_cache.HistoryCache`, as for `slo_history`; keys
include the registration time, and only windows of at most `MAX_HELD` scrapes are kept.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.analysis.history_cache import HistoryCache
from performance_agent.metrics.builder import aggregate_steps, aggregate_window, decode_raw_scrape, scrape_step

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from performance_agent.metrics.builder import AggregateFigures, RawScrape
    from performance_agent.metrics.goodput import LatencyTarget
    from performance_agent.metrics.ports import SnapshotRepository, StampedHistory
    from performance_agent.metrics.snapshot import RawSeries

__all__ = ("MAX_HELD", "ScrapeWindow", "WindowHistory")

#: Scrapes kept per instance: four hours at 30 s, one at 7.5 s; a decoded scrape is about 25 kB.
MAX_HELD = 480
#: Instances whose windows are kept.
DEFAULT_CAPACITY = 8


@dataclass(frozen=True, slots=True)
class ScrapeWindow:
    """The stored scrapes of one window, oldest first, and their summed increases."""

    raws: list[RawScrape]
    aggregated: AggregateFigures


@dataclass(frozen=True, slots=True)
class _HeldScrapes:
    """What is held for one instance (a `history_cache.Held`)."""

    loaded_from: float  # every scrape stored at or after this stamp is held (as of the last read)
    stamps: array[float]  # as stored, ascending
    raws: list[RawScrape]  # in stamp order, which is also `collected_at` order (checked on the way in)
    #: Per model (None = server total): `steps[m][i]` is the step from `raws[i]` to `raws[i + 1]`,
    #: computed on first use. Filled without awaiting, so concurrent analyses never interleave.
    steps: dict[str | None, list[RawSeries]] = field(default_factory=dict)

    def since(self, stamp: float) -> _HeldScrapes:
        first = bisect.bisect_left(self.stamps, stamp)
        steps = {model: computed[first:] for model, computed in self.steps.items()}
        return _HeldScrapes(stamp, self.stamps[first:], self.raws[first:], steps)

    def extended(self, newer: list[tuple[float, bytes]]) -> _HeldScrapes | None:
        """With scrapes stored after every one held; None when one is older than the last held
        (its `collected_at` disagrees with its stamp), which only a fresh read orders correctly.
        """
        if not newer:
            return self
        raws = self.raws + [decode_raw_scrape(data) for _, data in newer]
        joined = raws[max(len(self.raws) - 1, 0) :]
        if any(later.collected_at < earlier.collected_at for earlier, later in itertools.pairwise(joined)):
            return None
        stamps = self.stamps + array("d", (stamp for stamp, _ in newer))
        return _HeldScrapes(self.loaded_from, stamps, raws, {model: list(steps) for model, steps in self.steps.items()})

    def window(self, until: float, model_name: str | None, targets: Sequence[LatencyTarget]) -> ScrapeWindow:
        count = bisect.bisect_right(self.stamps, until)
        raws = self.raws[:count]
        if count < 2:
            return ScrapeWindow(raws, aggregate_window(raws, model_name=model_name, goodput_targets=targets))
        steps = self.steps.setdefault(model_name, [])
        for index in range(len(steps), count - 1):
            steps.append(scrape_step(self.raws[index], self.raws[index + 1], model_name=model_name))
        summed = aggregate_steps(raws[0], raws[-1], steps[: count - 1], model_name=model_name, goodput_targets=targets)
        return ScrapeWindow(raws, summed)


class WindowHistory:
    """Windows of recently analysed instances, the least recently used dropped first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, max_held: int = MAX_HELD) -> None:
        if capacity < 1 or max_held < 2:
            raise ValueError("capacity must be at least 1 and max_held at least 2")
        self._cache: HistoryCache[_HeldScrapes] = HistoryCache(capacity, keep=lambda held: len(held.raws) <= max_held)

    async def window(
        self,
        snapshots: SnapshotRepository,
        instance_id: str,
        registered_at: datetime,
        since: datetime,
        until: datetime,
        model_name: str | None = None,
        goodput_targets: Sequence[LatencyTarget] = (),
    ) -> ScrapeWindow:
        """The scrapes stored in [since, until] (by stored stamp), as `raw_between` returns them, summed."""

        async def read(after: float | None) -> StampedHistory:
            return await snapshots.raw_after(instance_id, since, after)

        refresh = await self._cache.refresh(
            (instance_id, registered_at.timestamp()),
            since.timestamp(),
            read,
            lambda stamp: _HeldScrapes(stamp, array("d"), []),
        )
        if refresh.held is None:  # out of order: read exactly as `raw_between` does, and keep nothing
            raws = await snapshots.raw_between(instance_id, since, until)
            return ScrapeWindow(raws, aggregate_window(raws, model_name=model_name, goodput_targets=goodput_targets))
        return refresh.held.window(until.timestamp(), model_name, goodput_targets)

    def __len__(self) -> int:
        return len(self._cache)
