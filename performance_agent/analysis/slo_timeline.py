"""The SLO objectives and the time line of scrape windows they are judged on, in columns with prefix sums.

Why columns and prefix sums: a week of 15 s scrapes is 40,320 windows, and every objective is
tallied over the period and four lookbacks on each analysis. With the windows sorted by end,
every lookback is a suffix of the time line (a window overlaps `[since, end]` iff it ends after
`since`), so a tally is two prefix-sum lookups plus a correction for the few windows that began
before `since`. Durations are whole microseconds (datetimes have microsecond resolution), so the
sums are exact integers whatever their order. Time lines are immutable; `extended` and
`dropped_before` share nothing mutable with the original, which lets the analysis service keep
one per instance between requests (`analysis.slo_history`) and top it up cheaply.
"""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from performance_agent.metrics.snapshot import Errors, Latency, Throughput

__all__ = (
    "OBJECTIVES",
    "Objective",
    "ObjectiveFigures",
    "SloTimeline",
    "Tally",
    "TimelineRow",
    "micros",
    "timeline_row",
)


class ObjectiveFigures(Protocol):
    """What objectives read: window figures, or a stored scrape's own figures decoded for analysis."""

    @property
    def latency(self) -> Latency: ...
    @property
    def throughput(self) -> Throughput: ...
    @property
    def errors(self) -> Errors: ...


@dataclass(frozen=True, slots=True)
class Objective:
    name: str
    comparison: Literal["<=", ">="]
    read: Callable[[ObjectiveFigures], float | None]


OBJECTIVES: tuple[Objective, ...] = (
    Objective("ttft_p99_s", "<=", lambda f: f.latency.ttft_s.p99),
    Objective("ttft_p95_s", "<=", lambda f: f.latency.ttft_s.p95),
    Objective("itl_p99_s", "<=", lambda f: f.latency.itl_s.p99),
    Objective("e2e_p99_s", "<=", lambda f: f.latency.e2e_s.p99),
    Objective("error_rate", "<=", lambda f: f.errors.error_rate),
    Objective("min_generation_tokens_per_s", ">=", lambda f: f.throughput.generation_tokens_per_s),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - naive callers get naive arithmetic, as before
_MICROSECOND = timedelta(microseconds=1)
_MISSING = math.nan  # a window without the figure, in a float column: unequal to itself, fails every comparison
_MEMO_LIMIT = 32  # judged (objective, target) prefix sums kept per time line


def micros(moment: datetime) -> int:
    """Whole microseconds since the epoch: every window edge is a datetime, so sums of these are exact."""
    return (moment - (_EPOCH if moment.tzinfo is not None else _NAIVE_EPOCH)) // _MICROSECOND


class TimelineRow(NamedTuple):
    """One scrape window as the SLO math sees it: its end and length in microseconds, one value per objective."""

    end_us: int
    duration_us: int
    values: tuple[float, ...]


def timeline_row(ended_at: datetime | None, window_s: float | None, figures: ObjectiveFigures) -> TimelineRow | None:
    """The window's row, or None when it cannot be placed on a time line (no end, or no positive length)."""
    if ended_at is None or window_s is None or window_s <= 0:
        return None
    values = tuple(_MISSING if (value := objective.read(figures)) is None else value for objective in OBJECTIVES)
    return TimelineRow(micros(ended_at), timedelta(seconds=window_s) // _MICROSECOND, values)


@dataclass(slots=True)
class Tally:
    """One objective over one lookback: seconds and windows good, bad, and without the figure."""

    good_s: float = 0.0
    bad_s: float = 0.0
    good_windows: int = 0
    bad_windows: int = 0
    no_data_windows: int = 0

    @property
    def observed_s(self) -> float:
        return self.good_s + self.bad_s


def _meets(value: float, target: float, comparison: str) -> bool:
    return value <= target if comparison == "<=" else value >= target


def _prefix(values: Iterable[int], start: int = 0) -> array[int]:
    return array("q", itertools.accumulate(values, initial=start))


class _Sums(NamedTuple):
    """Prefix sums (one entry more than windows, the first is the base) of durations and window counts."""

    seconds_us: array[int]
    windows: array[int]

    def extended(self, flags: Sequence[bool], durations: Sequence[int]) -> _Sums:
        return _Sums(
            self.seconds_us + _prefix(_kept(flags, durations), self.seconds_us[-1])[1:],
            self.windows + _prefix(flags, self.windows[-1])[1:],
        )

    def sliced(self, start: int, stop: int) -> _Sums:
        return _Sums(self.seconds_us[start : stop + 1], self.windows[start : stop + 1])


def _kept(flags: Sequence[bool], durations: Sequence[int]) -> Iterator[int]:
    return (duration if flag else 0 for flag, duration in zip(flags, durations, strict=True))


def _sums(flags: Sequence[bool], durations: Sequence[int]) -> _Sums:
    return _Sums(_prefix(_kept(flags, durations)), _prefix(flags))


@dataclass(frozen=True, slots=True)
class SloTimeline:
    """Scrape windows sorted by end: ends and durations in microseconds, one value column per objective.

    `values[k]` holds `OBJECTIVES[k]`'s figure per window (NaN where the window lacks it);
    `observed[k]` the prefix sums over windows that have it. `longest_us` bounds every duration
    (it may exceed the longest one still held). Judged prefix sums (per objective and target)
    are computed on first use and carried along by `extended` and `dropped_before`.
    """

    ends_us: array[int]
    durations_us: array[int]
    values: tuple[array[float], ...]
    observed: tuple[_Sums, ...]
    longest_us: int
    _judged: dict[tuple[int, str, float], _Sums] = field(default_factory=dict, compare=False)

    @classmethod
    def of_rows(cls, rows: Iterable[TimelineRow]) -> SloTimeline:
        ordered = sorted(rows, key=lambda row: row.end_us)
        durations = array("q", [row.duration_us for row in ordered])
        values = tuple(array("d", [row.values[k] for row in ordered]) for k in range(len(OBJECTIVES)))
        return cls(
            array("q", [row.end_us for row in ordered]),
            durations,
            values,
            tuple(_sums([value == value for value in column], durations) for column in values),
            max(durations, default=0),
        )

    @classmethod
    def of(cls, windows: Iterable[ObjectiveFiguresAt]) -> SloTimeline:
        """Windows with `ended_at` and a positive `window_s`, ordered by end (the others are skipped)."""
        rows = (timeline_row(figures.ended_at, figures.window_s, figures) for figures in windows)
        return cls.of_rows(row for row in rows if row is not None)

    def __len__(self) -> int:
        return len(self.ends_us)

    def value(self, objective: int, index: int) -> float | None:
        found = self.values[objective][index]
        return None if found != found else found

    def extended(self, rows: Sequence[TimelineRow]) -> SloTimeline:
        """With `rows` appended; they must be in end order and end no earlier than the last window."""
        if not rows:
            return self
        ends = [row.end_us for row in rows]
        if any(later < earlier for earlier, later in itertools.pairwise([*self.ends_us[-1:], *ends])):
            raise ValueError("appended windows must keep the time line in end order")
        durations = [row.duration_us for row in rows]
        columns = [[row.values[k] for row in rows] for k in range(len(OBJECTIVES))]
        judged = {
            key: sums.extended([_meets(value, key[2], key[1]) for value in columns[key[0]]], durations)
            for key, sums in self._judged.items()
        }
        return SloTimeline(
            self.ends_us + array("q", ends),
            self.durations_us + array("q", durations),
            tuple(old + array("d", new) for old, new in zip(self.values, columns, strict=True)),
            tuple(
                sums.extended([value == value for value in new], durations)
                for sums, new in zip(self.observed, columns, strict=True)
            ),
            max(self.longest_us, *durations),
            judged,
        )

    def _sliced(self, start: int, stop: int) -> SloTimeline:
        return SloTimeline(
            self.ends_us[start:stop],
            self.durations_us[start:stop],
            tuple(column[start:stop] for column in self.values),
            tuple(sums.sliced(start, stop) for sums in self.observed),
            self.longest_us,
            {key: sums.sliced(start, stop) for key, sums in self._judged.items()},
        )

    def dropped_before(self, index: int) -> SloTimeline:
        """Without the first `index` windows."""
        return self if index <= 0 else self._sliced(index, len(self))

    def until(self, now: datetime) -> SloTimeline:
        """The windows that ended by `now` (later ones are not judged yet)."""
        keep = bisect.bisect_right(self.ends_us, micros(now))
        return self if keep == len(self) else self._sliced(0, keep)

    def _good(self, objective: int, target: float, comparison: str) -> _Sums:
        key = (objective, comparison, target)
        found = self._judged.get(key)
        if found is None:
            flags = [_meets(value, target, comparison) for value in self.values[objective]]
            found = _sums(flags, self.durations_us)
            if len(self._judged) >= _MEMO_LIMIT:
                self._judged.pop(next(iter(self._judged)))
            self._judged[key] = found
        return found

    def tally(self, objective: int, target: float, comparison: str, since: datetime) -> Tally:
        """Objective `OBJECTIVES[objective]` against `target` over the windows' time after `since`."""
        since_us = micros(since)
        first = bisect.bisect_right(self.ends_us, since_us)
        observed, good = self.observed[objective], self._good(objective, target, comparison)
        observed_us = observed.seconds_us[-1] - observed.seconds_us[first]
        good_us = good.seconds_us[-1] - good.seconds_us[first]
        # Windows that began before `since` count only from `since` on.
        column = self.values[objective]
        for index in range(first, bisect.bisect_left(self.ends_us, since_us + self.longest_us, lo=first)):
            outside = since_us - (self.ends_us[index] - self.durations_us[index])
            value = column[index]
            if outside > 0 and value == value:
                observed_us -= outside
                if _meets(value, target, comparison):
                    good_us -= outside
        observed_windows = observed.windows[-1] - observed.windows[first]
        good_windows = good.windows[-1] - good.windows[first]
        return Tally(
            good_s=good_us / 1e6,
            bad_s=(observed_us - good_us) / 1e6,
            good_windows=good_windows,
            bad_windows=observed_windows - good_windows,
            no_data_windows=len(self) - first - observed_windows,
        )


class ObjectiveFiguresAt(ObjectiveFigures, Protocol):
    """Figures placed on a time line: where their window ends and how long it is."""

    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def window_s(self) -> float | None: ...
