"""The scenario suite as part of `make test`: precision and recall of every detector stay at or above 0.9."""

from __future__ import annotations

import pytest

from tests.eval.scenarios import EXCLUDED, SCENARIOS, Outcome
from tests.eval.suite import MIN_SCORE, VARIANTS, run_suite, score


@pytest.mark.slow
def test_the_scenario_suite_passes() -> None:
    result = run_suite(VARIANTS)
    expected = sum(len(s.engines) for s in SCENARIOS) * VARIANTS
    assert len(result.outcomes) == expected
    assert result.failures == [], result.failures
    figures = [value for tally in result.scores.values() for value in (tally.precision, tally.recall)]
    assert None not in figures
    assert min(value for value in figures if value is not None) >= MIN_SCORE
    assert result.planner_checked >= 100


def outcome(labels: list[str], detected: list[str], engine: str = "vllm", first: list[str] | None = None) -> Outcome:
    return Outcome(
        scenario="s",
        engine=engine,
        variant=0,
        magnitude=0.0,
        labels=labels,
        detected=detected,
        first_recommendation="x" if first else None,
        first_addresses=first or [],
        summary="",
    )


def test_scoring_counts_misses_false_alarms_and_planner_misses() -> None:
    result = score(
        [
            outcome(["queueing"], ["queueing"], first=["queueing"]),
            outcome(["queueing"], [], first=[]),
            outcome([], ["request_errors"]),
            outcome(["decode_latency"], ["decode_latency"], first=["kv_cache_pressure"]),
        ]
    )
    queueing, errors, decode = (result.scores[t] for t in ("queueing", "request_errors", "decode_latency"))
    assert (queueing.precision, queueing.recall) == (1.0, 0.5)
    assert (errors.precision, errors.recall) == (0.0, None)
    assert (decode.precision, decode.recall) == (1.0, 1.0)
    assert [o.labels for o in result.planner_misses] == [["decode_latency"]]
    assert "queueing: recall 0.500 < 0.9" in result.failures
    assert any("first recommendation x" in failure for failure in result.failures)


def test_excluded_pairs_are_not_scored() -> None:
    (engine, bottleneck) = next(iter(EXCLUDED))
    result = score([outcome([], [bottleneck], engine=engine)])
    assert result.scores[bottleneck].false_positive == 0
