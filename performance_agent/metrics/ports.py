"""The snapshot history's storage port: what collection, analysis and rollouts need from it.

Declared with the metrics domain that defines snapshots and their cumulative series; storage/
implements it per backend, so nothing that reads history depends on how it is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    from performance_agent.metrics.builder import RawScrape

__all__ = ("SnapshotRepository", "StampedHistory")


class StampedHistory(NamedTuple):
    """What changed in an instance's history since a reader last looked (see `history_after`)."""

    known: int
    newer: list[tuple[float, bytes]]


class SnapshotRepository(Protocol):
    async def add(self, instance_id: str, collected_at: datetime, snapshot_json: bytes, raw: bytes) -> bool:
        """Store one scrape and mark the instance up; False (nothing stored) when the instance is gone."""
        ...

    async def latest_raw(self, instance_id: str) -> RawScrape | None:
        """The newest stored cumulative series, the baseline of the next snapshot's window."""
        ...

    async def history_json(self, instance_id: str, since: datetime, limit: int) -> list[bytes]:
        """Encoded snapshots collected at or after `since`, newest first, at most `limit`."""
        ...

    async def raw_between(self, instance_id: str, since: datetime, until: datetime) -> list[RawScrape]:
        """Cumulative series collected in [since, until], oldest first (analysis windows and cohorts)."""
        ...

    async def history_after(self, instance_id: str, since: datetime, known_until: float | None) -> StampedHistory:
        """For readers that keep decoded history between calls: how many snapshots lie in
        [since, known_until] (stamps as stored, `collected_at.timestamp()`), so the reader can tell
        whether what it holds is still exactly that, and the snapshots newer than `known_until`
        (all since `since` when None), oldest first, each with its stamp.
        """
        ...

    async def raw_after(self, instance_id: str, since: datetime, known_until: float | None) -> StampedHistory:
        """`history_after` for the stored cumulative series (encoded; `decode_raw_scrape` reads them)."""
        ...

    async def count(self, instance_id: str) -> int: ...

    async def prune(self, older_than: datetime) -> int:
        """Delete snapshots collected before `older_than`; returns how many."""
        ...

    async def prune_to_size(self, max_bytes: int) -> int:
        """Delete the oldest snapshots until all stored ones take at most `max_bytes`; returns how many.

        Each instance's latest snapshot is kept whatever its size: the next scrape's window needs it.
        """
        ...
