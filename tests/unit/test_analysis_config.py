"""`PERF_AGENT_SLO_DEFAULTS` and `PERF_AGENT_DETECTOR_THRESHOLDS`: `name=value` entries, checked at start-up."""

from __future__ import annotations

import re

import pytest

from performance_agent.analysis.config import detector_thresholds
from performance_agent.config_pairs import parse_pairs
from performance_agent.fleet.slo import slo_defaults
from performance_agent.settings import SettingsError, load_settings


def test_named_targets_replace_the_defaults() -> None:
    targets = slo_defaults(["ttft_p99_s=1.5", " error_rate = 0.02 ", "min_generation_tokens_per_s=40"])
    assert (targets.ttft_p99_s, targets.error_rate, targets.min_generation_tokens_per_s) == (1.5, 0.02, 40.0)
    assert targets.itl_p99_s == 0.1
    assert slo_defaults(["min_generation_tokens_per_s=none"]).min_generation_tokens_per_s is None


def test_threshold_overrides() -> None:
    limits = detector_thresholds(["kv_usage_high=0.95", "min_requests_for_latency=50"])
    assert (limits.kv_usage_high, limits.min_requests_for_latency, limits.kv_usage_low) == (0.95, 50, 0.8)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["ttft_p99_s"], "PERF_AGENT_SLO_DEFAULTS: expected name=value entries, got 'ttft_p99_s'"),
        (["=1"], "PERF_AGENT_SLO_DEFAULTS: expected name=value entries, got '=1'"),
        (["ttft_p99_s=-1"], "PERF_AGENT_SLO_DEFAULTS: ttft_p99_s: Expected `float` > 0.0"),
        (["error_rate=2"], "PERF_AGENT_SLO_DEFAULTS: error_rate: Expected `float` <= 1.0"),
        (["ttft_p99_s=fast"], "PERF_AGENT_SLO_DEFAULTS: ttft_p99_s: Expected `float`, got `str`"),
        (["latency=1"], "PERF_AGENT_SLO_DEFAULTS: Object contains unknown field `latency`"),
    ],
)
def test_bad_slo_defaults_are_refused(entries: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        slo_defaults(entries)
    assert str(raised.value) == message


def test_thresholds_that_decrease_with_severity_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^PERF_AGENT_DETECTOR_THRESHOLDS: kv_usage thresholds must not decrease"):
        detector_thresholds(["kv_usage_low=0.99"])


def test_settings_refuse_to_start_with_one_line_naming_the_variable() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"PERF_AGENT_DETECTOR_THRESHOLDS": "kv_usage_high=2"})
    assert str(raised.value) == "PERF_AGENT_DETECTOR_THRESHOLDS: kv_usage_high: Expected `float` <= 1.0"
    settings = load_settings({"PERF_AGENT_SLO_DEFAULTS": "ttft_p99_s=1.5,itl_p99_s=0.05"})
    assert settings.slo_defaults == ["ttft_p99_s=1.5", "itl_p99_s=0.05"]


def test_pairs_keep_the_last_value_of_a_repeated_name() -> None:
    assert parse_pairs(["a=1", "b=2", "a=3"], "X") == {"a": "3", "b": "2"}
