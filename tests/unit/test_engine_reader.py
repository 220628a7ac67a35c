"""The shared page reader on odd but real inputs: cut pages, stray labels, bad values."""

from __future__ import annotations

import math

from performance_agent.engines.reader import PageReader
from performance_agent.metrics.exposition import parse_page

INF = math.inf


def read(text: str, model_labels: tuple[str, ...] = ("model_name",)) -> PageReader:
    return PageReader(parse_page(text), model_labels)


def test_buckets_without_or_with_an_unreadable_le_are_skipped() -> None:
    reader = read(
        """x_bucket{model_name="m",le="0.5"} 1
x_bucket{model_name="m"} 7
x_bucket{model_name="m",le="soon"} 9
x_bucket{model_name="m",le="+Inf"} 2
x_sum{model_name="m"} 0.6
x_count{model_name="m"} 2
"""
    )
    assert reader.histogram("lat", "x")
    histogram = reader.result("e", engine_config={}, approximations=[]).total.histograms["lat"]
    assert histogram.buckets == [(0.5, 1.0), (INF, 2.0)]


def test_count_falls_back_to_the_inf_bucket_and_a_missing_sum_drops_the_histogram() -> None:
    reader = read(
        """a_bucket{le="1"} 1
a_bucket{le="+Inf"} 3
a_sum 2.0
b_bucket{le="1"} 1
b_bucket{le="+Inf"} 3
b_count 3
"""
    )
    reader.histogram("a", "a")
    reader.histogram("b", "b")
    total = reader.result("e", engine_config={}, approximations=[]).total
    assert total.histograms["a"].count == 3.0
    assert "b" not in total.histograms


def test_ranks_with_different_bucket_edges_merge_on_common_edges() -> None:
    reader = read(
        """h_bucket{engine="0",le="0.1"} 1
h_bucket{engine="0",le="1"} 2
h_bucket{engine="0",le="+Inf"} 3
h_sum{engine="0"} 1
h_bucket{engine="1",le="1.0"} 5
h_bucket{engine="1",le="+Inf"} 6
h_sum{engine="1"} 2
"""
    )
    reader.histogram("h", "h")
    histogram = reader.result("e", engine_config={}, approximations=[]).total.histograms["h"]
    # One rank's "1" and the other's "1.0" are the same edge; 0.1 exists on one rank only.
    assert histogram.buckets == [(0.1, 1.0), (1.0, 7.0), (INF, 9.0)]


def test_unlabelled_samples_count_in_the_total_only() -> None:
    reader = read('r{model_name="a"} 2\nr{model_name="b"} 3\nr 4\n')
    reader.gauge("requests_running", "r")
    adapted = reader.result("e", engine_config={}, approximations=[])
    assert sorted(adapted.models) == ["a", "b"]
    assert adapted.total.gauges == {"requests_running": 9.0}


def test_created_timestamps_ignore_zero_and_other_ranks_and_fall_back_to_process_start() -> None:
    reader = read(
        """c_total{model_name="a"} 1
c_created{model_name="a"} 0
c_created{model_name="a",tp_rank="1"} 5
d_total{model_name="b"} 1
d_created{model_name="b"} 1.7e9
"""
    )
    reader.counter("c", "c_total")
    reader.counter("d", "d_total")
    adapted = reader.result("e", engine_config={}, approximations=[], start_fallback_s=1.0e9)
    assert adapted.models["a"].process_start_time_s == 1.0e9
    assert adapted.models["b"].process_start_time_s == 1.7e9
    assert adapted.total.process_start_time_s == 1.7e9


def test_derived_gauges_skip_non_finite_values() -> None:
    reader = read("")
    reader.gauge_values("kv_cache_usage", [("m", INF), ("m", 0.5), (None, math.nan)])
    adapted = reader.result("e", engine_config={}, approximations=[])
    assert adapted.models["m"].gauges == {"kv_cache_usage": 0.5}
    assert adapted.total.gauges == {"kv_cache_usage": 0.5}


def test_page_value_and_declared() -> None:
    reader = read("# TYPE fam_total counter\n# TYPE other counter\nstart NaN\nok 2\n")
    assert reader.page_value("start") is None
    assert reader.page_value("ok") == 2.0
    assert reader.page_value("absent") is None
    assert reader.declared("fam_total")
    assert reader.declared("other_total")  # OpenMetrics declares counters without the suffix
    assert not reader.declared("absent_total")
    assert reader.help_text("absent") == ""


def test_label_filtered_counter_counts_zero_for_seen_models() -> None:
    reader = read('s_total{model_name="m",reason="stop"} 5\n')
    reader.counter("failed", "s_total", only=("reason", frozenset({"abort"})))
    assert reader.result("e", engine_config={}, approximations=[]).total.counters == {"failed": 0.0}
    assert not reader.counter("x", "absent_total")
    assert not reader.histogram("x", "absent")
    assert not reader.gauge("x", "absent")
