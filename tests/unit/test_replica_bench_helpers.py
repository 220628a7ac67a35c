"""The replica benchmark's parsing of /proc/<pid>/stat and /metrics, and its takeover-window test."""

from __future__ import annotations

import pytest

from tests.bench.replica_bench import counter_total, cpu_seconds, inside

#: proc(5) field order: pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
STAT = "4242 (python) S 1 4242 4242 0 -1 4194560 9000 0 12 0 250 75 3 1 20 0 5 0 100 123456 789"


def test_cpu_seconds_adds_user_and_system_ticks() -> None:
    assert cpu_seconds(STAT, 100.0) == pytest.approx(3.25)  # (250 + 75) / 100


def test_cpu_seconds_counts_fields_after_a_command_name_with_spaces_and_parentheses() -> None:
    tricky = STAT.replace("(python)", "(uv (worker) 1)")
    assert cpu_seconds(tricky, 100.0) == pytest.approx(3.25)
    assert cpu_seconds(STAT.replace(" 250 75 ", " 0 0 "), 100.0) == 0.0


PAGE = """\
# HELP performance_agent_workflow_windows_total Health windows judged, by verdict.
# TYPE performance_agent_workflow_windows_total counter
performance_agent_workflow_windows_total{verdict="pass"} 40.0
performance_agent_workflow_windows_total{verdict="fail"} 2.0
# HELP performance_agent_workflow_windows_created Health windows judged, by verdict.
# TYPE performance_agent_workflow_windows_created gauge
performance_agent_workflow_windows_created{verdict="pass"} 1.7e+09
# HELP other_total Something else.
# TYPE other_total counter
other_total 7.0
"""


def test_counter_total_sums_every_label_set_of_one_family_only() -> None:
    assert counter_total(PAGE, "performance_agent_workflow_windows") == 42.0
    assert counter_total(PAGE, "other") == 7.0


def test_counter_total_is_zero_for_a_family_not_on_the_page() -> None:
    assert counter_total(PAGE, "performance_agent_workflow_rollbacks") == 0.0


def test_inside_counts_both_ends_of_a_window() -> None:
    windows = [(10.0, 12.0), (20.0, 21.5)]
    assert [inside(t, windows) for t in (9.99, 10.0, 11.0, 12.0, 12.01, 20.0, 21.5, 30.0)] == [
        False, True, True, True, False, True, True, False,
    ]  # fmt: skip
    assert not inside(1.0, [])
