"""The columnar SLO time line against a plain reference: the straightforward per-window loop it replaced.

The reference walks every window for every objective and lookback with datetime arithmetic,
exactly as the SLO math did before it was made fast; Hypothesis feeds both the same windows
(jittered ends, gaps, overlaps, long straddling windows, missing figures, values at the target)
and every count must match exactly and every ratio to float precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from performance_agent.analysis.schemas import WindowFigures
from performance_agent.analysis.slo import BURN_RATE_PAIRS, SHORT_WINDOW_COVERAGE, evaluate_slo, format_lookback
from performance_agent.analysis.slo_timeline import OBJECTIVES, SloTimeline, TimelineRow, timeline_row
from performance_agent.fleet.slo import SloTargets
from tests.unit.test_detectors_support import healthy_figures

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class _RefTally:
    good_s: float = 0.0
    bad_s: float = 0.0
    good: int = 0
    bad: int = 0
    no_data: int = 0


def _reference_tally(windows: list[WindowFigures], read: object, comparison: str, target: float, since: datetime,
                     until: datetime) -> _RefTally:  # fmt: skip
    tally = _RefTally()
    for figures in windows:
        assert figures.ended_at is not None
        assert figures.window_s is not None
        start = figures.ended_at - timedelta(seconds=figures.window_s)
        overlap = (min(figures.ended_at, until) - max(start, since)).total_seconds()
        if overlap <= 0:
            continue
        value = read(figures)  # type: ignore[operator]
        if value is None:
            tally.no_data += 1
        elif (value <= target) if comparison == "<=" else (value >= target):
            tally.good_s += overlap
            tally.good += 1
        else:
            tally.bad_s += overlap
            tally.bad += 1
    return tally


def _window(end_offset_s: float, length_s: float, ttft: float | None, errors: float | None) -> WindowFigures:
    figures = healthy_figures("vllm", window_s=length_s, ended_at=NOW - timedelta(seconds=end_offset_s))
    figures.latency.ttft_s.p99 = ttft
    figures.errors.error_rate = errors
    return figures


windows_strategy = st.lists(
    st.builds(
        _window,
        st.floats(0, 8000, allow_nan=False).map(lambda s: round(s, 6)),
        st.sampled_from([15.0, 14.999731, 15.000412, 60.0, 0.5, 900.0, 4000.0]),
        st.one_of(st.none(), st.sampled_from([0.5, 2.0, 1.999999, 2.000001, 9.0])),
        st.one_of(st.none(), st.sampled_from([0.0, 0.01, 0.5])),
    ),
    max_size=60,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    windows=windows_strategy,
    compliance_s=st.sampled_from([60.0, 300.0, 900.0, 3600.0]),
    period_s=st.sampled_from([3600.0, 7200.0, 21600.0]),
    ratio=st.sampled_from([0.9, 0.99, 1.0]),
)
def test_the_report_matches_the_window_by_window_reference(
    windows: list[WindowFigures], compliance_s: float, period_s: float, ratio: float
) -> None:
    targets = SloTargets(target_ratio=ratio)
    report = evaluate_slo(windows, targets, compliance_window_s=compliance_s, period_s=period_s, now=NOW)
    judged = [w for w in windows if w.ended_at is not None and w.ended_at <= NOW]
    allowed_bad = 1.0 - ratio
    for found in report.objectives:
        objective = next(o for o in OBJECTIVES if o.name == found.objective)
        target = getattr(targets, objective.name)

        def tally(since_s: float, objective: object = objective, target: float = target) -> _RefTally:
            return _reference_tally(judged, objective.read, objective.comparison, target,  # type: ignore[attr-defined]
                                    NOW - timedelta(seconds=since_s), NOW)  # fmt: skip

        window, period = tally(compliance_s), tally(period_s)
        assert (found.good_windows, found.bad_windows, found.windows_without_data) == (
            window.good,
            window.bad,
            window.no_data,
        )
        observed = window.good_s + window.bad_s
        assert found.compliance == (pytest.approx(window.good_s / observed, rel=1e-12) if observed > 0 else None)
        period_observed = period.good_s + period.bad_s
        assert found.period_coverage == pytest.approx(min(period_observed / period_s, 1.0), rel=1e-12)
        if period_observed <= 0:
            assert found.error_budget_remaining is None
        elif allowed_bad <= 0:
            assert found.error_budget_remaining == (1.0 if period.bad_s == 0 else 0.0)
        else:
            expected = 1.0 - (period.bad_s / period_observed) / allowed_bad
            assert found.error_budget_remaining == pytest.approx(expected, rel=1e-9, abs=1e-9)
        short_windows = {pair.short_s for pair in BURN_RATE_PAIRS}
        for lookback in sorted({s for pair in BURN_RATE_PAIRS for s in (pair.long_s, pair.short_s)}):
            rate = found.burn_rates[format_lookback(lookback)]
            recent = tally(lookback)
            seen = recent.good_s + recent.bad_s
            # Short windows need SHORT_WINDOW_COVERAGE of their length; long ones any data.
            needed = SHORT_WINDOW_COVERAGE * lookback if lookback in short_windows else 0.0
            if allowed_bad <= 0 or seen <= 0 or seen < needed:
                assert rate.value is None
                assert rate.reason
            else:
                assert rate.value == pytest.approx((recent.bad_s / seen) / allowed_bad, rel=1e-9, abs=1e-12)


def _rows(count: int, start_us: int = 0, step_us: int = 15_000_000) -> list[TimelineRow]:
    rows = []
    for index in range(count):
        ttft = math.nan if index % 7 == 0 else (3.0 if index % 5 == 0 else 0.4)
        values = (ttft, 0.2, 0.05, 5.0, 0.0, 1000.0 + index)
        rows.append(TimelineRow(start_us + index * step_us, step_us - (index % 3), values))
    return rows


def _columns(timeline: SloTimeline) -> tuple[list[int], list[int], list[list[float | None]]]:
    values = [[timeline.value(k, i) for i in range(len(timeline))] for k in range(len(OBJECTIVES))]
    return list(timeline.ends_us), list(timeline.durations_us), values


def test_a_time_line_grown_and_trimmed_in_pieces_equals_one_built_at_once() -> None:
    rows = _rows(200)
    grown = SloTimeline.of_rows(rows[:50])
    since = datetime.fromtimestamp(0, UTC) + timedelta(seconds=700)
    before = grown.tally(0, 2.0, "<=", since)  # memoizes the judged sums, which must follow the growth
    grown = grown.extended(rows[50:120]).extended([]).extended(rows[120:]).dropped_before(30)
    whole = SloTimeline.of_rows(rows[30:])

    assert _columns(grown) == _columns(whole)
    for k, objective in enumerate(OBJECTIVES):
        for seconds in (0, 700, 1000.5, 2999.9999, 2500):
            moment = datetime.fromtimestamp(0, UTC) + timedelta(seconds=seconds)
            assert grown.tally(k, 2.0, objective.comparison, moment) == whole.tally(
                k, 2.0, objective.comparison, moment
            )
    assert before.good_windows + before.bad_windows > 0


def test_windows_may_not_be_appended_out_of_end_order() -> None:
    timeline = SloTimeline.of_rows(_rows(10))
    late = _rows(1, start_us=5 * 15_000_000)

    with pytest.raises(ValueError, match="end order"):
        timeline.extended(late)


def test_a_window_without_an_end_or_a_positive_length_is_not_placed() -> None:
    figures = healthy_figures("vllm", window_s=15.0, ended_at=NOW)

    assert timeline_row(None, 15.0, figures) is None
    assert timeline_row(NOW, None, figures) is None
    assert timeline_row(NOW, 0.0, figures) is None
    row = timeline_row(NOW, 15.0000004, figures)
    assert row is not None
    assert row.duration_us == 15_000_000  # rounded to the microsecond, as datetime arithmetic does
    assert row.values[0] == figures.latency.ttft_s.p99


def test_until_drops_windows_ending_later_and_value_reads_missing_as_none() -> None:
    timeline = SloTimeline.of_rows(_rows(10))
    cut = timeline.until(datetime.fromtimestamp(0, UTC) + timedelta(seconds=45))

    assert list(cut.ends_us) == [0, 15_000_000, 30_000_000, 45_000_000]
    assert cut.value(0, 0) is None
    assert cut.value(0, 1) == 0.4
    assert timeline.until(datetime.fromtimestamp(10_000, UTC)) is timeline
