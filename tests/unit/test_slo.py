"""SLO compliance, error budget and burn rates against hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from performance_agent.analysis.schemas import ObjectiveReport, SloReport, WindowFigures
from performance_agent.analysis.slo import BURN_RATE_PAIRS, evaluate_slo, format_lookback, parse_slo_targets
from performance_agent.fleet.slo import SloTargets
from tests.unit.test_detectors_support import healthy_figures

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = 60.0


def minute_windows(count: int, bad: set[int], *, engine: str = "vllm", step_s: float = MINUTE) -> list[WindowFigures]:
    """`count` consecutive windows ending at NOW; index 0 is the oldest, `bad` ones have TTFT p99 = 5 s."""
    windows = []
    for index in range(count):
        figures = healthy_figures(engine, window_s=step_s)
        figures.ended_at = NOW - timedelta(seconds=step_s * (count - 1 - index))
        if index in bad:
            figures.latency.ttft_s.p99 = 5.0
        windows.append(figures)
    return windows


def objective(report: SloReport, name: str) -> ObjectiveReport:
    [found] = [o for o in report.objectives if o.objective == name]
    return found


def seven_hours_with_three_recent_bad() -> SloReport:
    count = 7 * 60
    windows = minute_windows(count, bad={count - 1, count - 7, count - 12})
    return evaluate_slo(windows, SloTargets(), compliance_window_s=15 * MINUTE, period_s=6 * 3600.0)


def test_compliance_is_the_share_of_good_windows_in_the_analysis_window() -> None:
    ttft = objective(seven_hours_with_three_recent_bad(), "ttft_p99_s")

    assert (ttft.good_windows, ttft.bad_windows, ttft.windows_without_data) == (12, 3, 0)
    assert ttft.compliance == pytest.approx(12 / 15)
    assert ttft.current == 5.0  # the latest window is a bad one
    assert ttft.target == 2.0
    assert ttft.comparison == "<="


def test_error_budget_remaining_over_the_period() -> None:
    ttft = objective(seven_hours_with_three_recent_bad(), "ttft_p99_s")

    # 3 bad of 360 observed minutes = 0.8333% bad, allowed 1% -> 83.33% of the budget spent
    assert ttft.error_budget_remaining == pytest.approx(1 - (3 / 360) / 0.01)
    assert ttft.period_coverage == 1.0


def test_burn_rates_per_lookback() -> None:
    ttft = objective(seven_hours_with_three_recent_bad(), "ttft_p99_s")

    values = {label: rate.value for label, rate in ttft.burn_rates.items()}
    assert values == pytest.approx({"5m": 20.0, "30m": 10.0, "1h": 5.0, "6h": (3 / 360) / 0.01})
    assert all(rate.reason is None for rate in ttft.burn_rates.values())


def test_good_objectives_burn_nothing() -> None:
    errors = objective(seven_hours_with_three_recent_bad(), "error_rate")

    assert errors.compliance == 1.0
    assert errors.error_budget_remaining == 1.0
    assert {label: rate.value for label, rate in errors.burn_rates.items()} == {
        "5m": 0.0,
        "30m": 0.0,
        "1h": 0.0,
        "6h": 0.0,
    }


def test_short_windows_need_covering_while_long_windows_use_what_exists() -> None:
    report = evaluate_slo(minute_windows(20, bad=set()), SloTargets(), compliance_window_s=900, period_s=168 * 3600)
    ttft = objective(report, "ttft_p99_s")

    assert ttft.burn_rates["5m"].value == 0.0
    assert ttft.burn_rates["30m"].value is None  # a short window: 20 of 30 minutes < 90%
    assert ttft.burn_rates["30m"].reason == (
        "only 1200 s of data in the last 30m; a short window's burn rate needs at least 90% of it"
    )
    assert ttft.burn_rates["1h"].value == 0.0  # long windows: the 20 minutes that exist, as PromQL's rate()
    assert ttft.burn_rates["6h"].value == 0.0
    assert ttft.period_coverage == pytest.approx(1200 / (168 * 3600))


def test_a_short_window_counts_from_ninety_percent_covered() -> None:
    bad = set(range(27))
    covered = evaluate_slo(minute_windows(27, bad=bad), SloTargets(), compliance_window_s=900, period_s=3600)
    short = evaluate_slo(minute_windows(26, bad=bad), SloTargets(), compliance_window_s=900, period_s=3600)

    assert objective(covered, "ttft_p99_s").burn_rates["30m"].value == pytest.approx(100.0)
    assert objective(short, "ttft_p99_s").burn_rates["30m"].value is None
    assert objective(short, "ttft_p99_s").burn_rates["6h"].value == pytest.approx(100.0)


def test_windows_are_weighted_by_the_time_they_cover() -> None:
    good_a = healthy_figures("vllm", window_s=60.0, ended_at=NOW - timedelta(seconds=180))
    bad_long = healthy_figures("vllm", window_s=120.0, ended_at=NOW - timedelta(seconds=60), latency__ttft_s__p99=3.0)
    good_b = healthy_figures("vllm", window_s=60.0, ended_at=NOW)

    report = evaluate_slo([good_b, bad_long, good_a], SloTargets(), compliance_window_s=240, period_s=3600)
    ttft = objective(report, "ttft_p99_s")

    assert (ttft.good_windows, ttft.bad_windows) == (2, 1)
    assert ttft.compliance == pytest.approx(0.5)


def test_a_window_straddling_the_start_counts_only_its_overlap() -> None:
    bad = healthy_figures("vllm", window_s=60.0, ended_at=NOW - timedelta(seconds=30), latency__ttft_s__p99=3.0)
    good = healthy_figures("vllm", window_s=30.0, ended_at=NOW)

    ttft = objective(evaluate_slo([bad, good], SloTargets(), compliance_window_s=60, period_s=3600), "ttft_p99_s")

    assert ttft.compliance == pytest.approx(0.5)  # 30 s of the bad window fall inside, 30 s good


def test_windows_without_the_figure_are_counted_apart() -> None:
    windows = minute_windows(10, bad={9})
    for figures in windows[:4]:
        figures.latency.ttft_s.p99 = None

    ttft = objective(evaluate_slo(windows, SloTargets(), compliance_window_s=600, period_s=3600), "ttft_p99_s")

    assert (ttft.good_windows, ttft.bad_windows, ttft.windows_without_data) == (5, 1, 4)
    assert ttft.compliance == pytest.approx(5 / 6)


def test_an_objective_with_no_data_at_all_says_so() -> None:
    windows = minute_windows(10, bad=set(), engine="tgi")
    for figures in windows:
        figures.latency.e2e_s.p99 = None

    e2e = objective(evaluate_slo(windows, SloTargets(), compliance_window_s=600, period_s=3600), "e2e_p99_s")

    assert e2e.compliance is None
    assert e2e.error_budget_remaining is None
    assert e2e.reason == "no window in the period carries e2e_p99_s"
    assert e2e.burn_rates["5m"].reason == "no data for e2e_p99_s in the last 5m"


def test_throughput_floor_is_evaluated_only_when_set() -> None:
    windows = minute_windows(10, bad=set())
    windows[-1].throughput.generation_tokens_per_s = 900.0

    without = evaluate_slo(windows, SloTargets(), compliance_window_s=600, period_s=3600)
    floor = msgspec.structs.replace(SloTargets(), min_generation_tokens_per_s=1000.0)
    with_floor = objective(
        evaluate_slo(windows, floor, compliance_window_s=600, period_s=3600), "min_generation_tokens_per_s"
    )

    assert "min_generation_tokens_per_s" not in {o.objective for o in without.objectives}
    assert with_floor.comparison == ">="
    assert (with_floor.good_windows, with_floor.bad_windows) == (9, 1)
    assert with_floor.current == 900.0


def test_current_comes_from_the_whole_window_figures_when_given() -> None:
    windows = minute_windows(10, bad={9})
    whole = healthy_figures("vllm", latency__ttft_s__p99=1.25)

    report = evaluate_slo(windows, SloTargets(), compliance_window_s=600, period_s=3600, current=whole)

    assert objective(report, "ttft_p99_s").current == 1.25


def test_now_defaults_to_the_latest_window_and_later_windows_are_ignored() -> None:
    windows = minute_windows(10, bad={9})

    earlier = evaluate_slo(
        windows, SloTargets(), compliance_window_s=300, period_s=3600, now=NOW - timedelta(minutes=1)
    )
    latest = evaluate_slo(windows, SloTargets(), compliance_window_s=300, period_s=3600)

    assert latest.evaluated_at == NOW
    assert latest.window_start == NOW - timedelta(seconds=300)
    assert objective(earlier, "ttft_p99_s").bad_windows == 0
    assert objective(latest, "ttft_p99_s").bad_windows == 1


def test_a_target_ratio_of_one_leaves_no_budget() -> None:
    targets = parse_slo_targets({"target_ratio": 1.0})
    ttft = objective(
        evaluate_slo(minute_windows(10, bad={9}), targets, compliance_window_s=600, period_s=3600), "ttft_p99_s"
    )

    assert ttft.error_budget_remaining == 0.0
    assert ttft.burn_rates["5m"].value is None
    assert ttft.burn_rates["5m"].reason == "target_ratio 1 leaves no error budget to burn"


def test_burn_rate_pairs_are_the_sre_workbook_ones() -> None:
    assert [(p.name, p.factor) for p in BURN_RATE_PAIRS] == [("1h/5m", 14.4), ("6h/30m", 6.0)]
    assert [format_lookback(s) for s in (300, 1800, 3600, 21600, 86400, 90)] == ["5m", "30m", "1h", "6h", "1d", "90s"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ttft_p99_s": -1.0}, r"Expected `float` > 0.0 - at `\$.ttft_p99_s`"),
        ({"itl_p99_s": 0}, r"Expected `float` > 0.0 - at `\$.itl_p99_s`"),
        ({"target_ratio": 0}, r"Expected `float` > 0.0 - at `\$.target_ratio`"),
        ({"target_ratio": 1.5}, r"Expected `float` <= 1.0 - at `\$.target_ratio`"),
        ({"error_rate": 2}, r"Expected `float` <= 1.0 - at `\$.error_rate`"),
        ({"min_generation_tokens_per_s": -5}, r"at `\$.min_generation_tokens_per_s`"),
        ({"ttft_p99_s": "fast"}, r"Expected `float`, got `str`"),
        ({"latency": 1}, "unknown field `latency`"),
    ],
)
def test_invalid_targets_are_rejected(body: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        parse_slo_targets(body)


def test_targets_fall_back_to_defaults() -> None:
    targets = parse_slo_targets({"ttft_p99_s": 0.5})

    assert targets.ttft_p99_s == 0.5
    assert (targets.ttft_p95_s, targets.itl_p99_s, targets.e2e_p99_s, targets.error_rate) == (1.0, 0.1, 30.0, 0.01)
    assert targets.target_ratio == 0.99
    assert parse_slo_targets(None) == SloTargets()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compliance_window_s": 0, "period_s": 10}, "must be positive"),
        ({"compliance_window_s": 10, "period_s": 10, "min_burn_coverage": 0}, "min_burn_coverage"),
    ],
)
def test_bad_evaluation_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_slo(minute_windows(2, bad=set()), SloTargets(), **kwargs)


def test_now_is_required_without_timestamps() -> None:
    with pytest.raises(ValueError, match="now is required"):
        evaluate_slo([healthy_figures("vllm")], SloTargets(), compliance_window_s=60, period_s=60)
