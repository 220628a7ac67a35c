"""One way to keep decoded history between analyses and top it up from storage: `HistoryCache`.

Why one: the SLO time line (`slo_history`) and the analysis window (`window_history`) both
keep what they decoded from stored snapshots, both must stay exactly what a fresh read would
give, and both check that the same way. Each call asks storage how many snapshots lie between
the start and the newest one held; only when that equals what is held are the newer ones
appended, otherwise (a snapshot deleted, or stored out of order) the whole span is read again.
What is held (`Held`) differs; the bookkeeping (that check, the least-recently-used eviction)
lives here once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar

if TYPE_CHECKING:
    from performance_agent.metrics.ports import StampedHistory

__all__ = ("Held", "HistoryCache", "Refresh")


class Held(Protocol):
    """What is kept for one key; never changed in place, so concurrent analyses cannot tear it."""

    @property
    def loaded_from(self) -> float:
        """Every snapshot stored at or after this stamp is held (as of the last read)."""
        ...

    @property
    def stamps(self) -> Sequence[float]:
        """The stamps of the snapshots held, as stored, ascending."""
        ...

    def since(self, stamp: float) -> Self:
        """Without the snapshots stored before `stamp` (never before `loaded_from`)."""
        ...

    def extended(self, newer: list[tuple[float, bytes]]) -> Self | None:
        """With snapshots stored after every one held; None when only a fresh read orders them."""
        ...


H = TypeVar("H", bound=Held)

#: Reads what storage holds after a stamp (None: from the start); see `SnapshotRepository.history_after`.
Reader = Callable[[float | None], Awaitable["StampedHistory"]]


class Refresh(Generic[H]):
    """The outcome of one lookup: the held value (None when it could not be kept in order) and the last read."""

    __slots__ = ("held", "read")

    def __init__(self, held: H | None, read: StampedHistory) -> None:
        self.held = held
        self.read = read


class HistoryCache(Generic[H]):
    """Held values of recently analysed keys, the least recently used dropped first."""

    def __init__(self, capacity: int, *, keep: Callable[[H], bool] = lambda _: True) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._keep = keep
        self._held: OrderedDict[Hashable, H] = OrderedDict()

    async def refresh(self, key: Hashable, stamp: float, read: Reader, empty: Callable[[float], H]) -> Refresh[H]:
        """The value for `key` covering every snapshot stored at or after `stamp`, topped up or read again."""
        held = self._held.get(key)
        refreshed: H | None = None
        if held is not None and stamp >= held.loaded_from:
            current = held.since(stamp)
            if len(current.stamps):
                history = await read(current.stamps[-1])
                if history.known == len(current.stamps):
                    refreshed = current.extended(history.newer)
        if refreshed is None:
            history = await read(None)
            refreshed = empty(stamp).extended(history.newer)
        if refreshed is None or not self._keep(refreshed):
            self._held.pop(key, None)
        else:
            self._held[key] = refreshed
            self._held.move_to_end(key)
            while len(self._held) > self._capacity:
                self._held.popitem(last=False)
        return Refresh(refreshed, history)

    def __len__(self) -> int:
        return len(self._held)
