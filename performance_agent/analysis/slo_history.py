"""The SLO time line of an instance's whole period, kept between analyses and topped up from storage.

Why a cache: the SLO report judges every scrape window of the period (a week by default,
40,320 windows at 15 s), and decoding that many stored snapshots takes longer than an analysis
may (`POST /analyze` p99 < 50 ms over 10,000 stored snapshots). Only the SLO columns of each
window are kept (`SloTimeline`: 80 bytes a window), for the most recently analysed instances.

Why it stays exact: `history_cache.HistoryCache` tops it up only when storage agrees with what is
held, and reads the period again otherwise. The key includes the instance's registration time,
so a deleted and re-registered instance never sees the old history. The stamps compared are the
stored ones, so the selection is exactly the one a fresh read (`history_json(since)`) would make.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

from performance_agent.analysis.history_cache import HistoryCache
from performance_agent.analysis.slo_timeline import SloTimeline, TimelineRow, timeline_row
from performance_agent.analysis.window import decode_scrape_figures, select_model

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import datetime

    from performance_agent.metrics.ports import SnapshotRepository, StampedHistory

__all__ = ("SloHistory",)

#: Instances (and models) whose time lines are kept; a week of 15 s scrapes is about 3 MB each.
DEFAULT_CAPACITY = 16


@dataclass(frozen=True, slots=True)
class _HeldTimeline:
    """What is held for one instance and model (a `history_cache.Held`)."""

    model_name: str | None
    loaded_from: float  # every snapshot stored at or after this stamp is held (as of the last read)
    stamps: array[float]  # their stamps, as stored, ascending
    row_stamps: array[float]  # the stamps of those that give a window on the time line
    timeline: SloTimeline  # those windows, in stamp order (which is end order, see `extended`)

    @classmethod
    def empty(cls, model_name: str | None, loaded_from: float) -> _HeldTimeline:
        return cls(model_name, loaded_from, array("d"), array("d"), SloTimeline.of_rows(()))

    def since(self, stamp: float) -> _HeldTimeline:
        """Without the snapshots stored before `stamp` (which must not be before `loaded_from`)."""
        first = bisect.bisect_left(self.stamps, stamp)
        first_row = bisect.bisect_left(self.row_stamps, stamp)
        if first == 0 and first_row == 0:
            return _HeldTimeline(self.model_name, stamp, self.stamps, self.row_stamps, self.timeline)
        return _HeldTimeline(
            self.model_name,
            stamp,
            self.stamps[first:],
            self.row_stamps[first_row:],
            self.timeline.dropped_before(first_row),
        )

    def extended(self, newer: list[tuple[float, bytes]]) -> _HeldTimeline | None:
        """With snapshots stored after every one held, given in stamp order; None when their windows
        would not follow the held ones in end order (a document whose time disagrees with its stamp),
        which a fresh sort of the whole period handles instead.
        """
        if not newer:
            return self
        placed = [(stamp, row) for stamp, row in _rows(newer, self.model_name) if row is not None]
        ends = [row.end_us for _, row in placed]
        if any(later < earlier for earlier, later in itertools.pairwise([*self.timeline.ends_us[-1:], *ends])):
            return None
        return _HeldTimeline(
            self.model_name,
            self.loaded_from,
            self.stamps + array("d", (stamp for stamp, _ in newer)),
            self.row_stamps + array("d", (stamp for stamp, _ in placed)),
            self.timeline.extended([row for _, row in placed]),
        )


def _rows(
    documents: Iterable[tuple[float, bytes]], model_name: str | None
) -> Iterator[tuple[float, TimelineRow | None]]:
    """Each stored snapshot's own window (the server total or one model), as `analysis.window.timeline` reads it."""
    for stamp, document in documents:
        scrape = decode_scrape_figures(document)
        chosen = select_model(scrape, model_name)
        yield stamp, (None if chosen is None else timeline_row(scrape.collected_at, chosen.window_s, chosen))


class SloHistory:
    """Time lines of recently analysed instances, the least recently used dropped first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._cache: HistoryCache[_HeldTimeline] = HistoryCache(capacity)

    async def timeline(
        self,
        snapshots: SnapshotRepository,
        instance_id: str,
        registered_at: datetime,
        since: datetime,
        model_name: str | None = None,
    ) -> SloTimeline:
        """Windows of every snapshot stored at or after `since` (by stored stamp), sorted by end."""

        async def read(after: float | None) -> StampedHistory:
            return await snapshots.history_after(instance_id, since, after)

        refresh = await self._cache.refresh(
            (instance_id, registered_at.timestamp(), model_name),
            since.timestamp(),
            read,
            lambda stamp: _HeldTimeline.empty(model_name, stamp),
        )
        if refresh.held is None:  # windows out of end order: sorted as a whole, and not kept
            return SloTimeline.of_rows(row for _, row in _rows(refresh.read.newer, model_name) if row is not None)
        return refresh.held.timeline

    def __len__(self) -> int:
        return len(self._cache)
