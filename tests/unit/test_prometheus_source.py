"""Label matchers, the readings query and Prometheus answers turned into a page, with plain values."""

from __future__ import annotations

import json
import math
import re

import pytest

from performance_agent.fleet.selectors import LabelMatcher, SelectorError, parse_selector, render_selector
from performance_agent.metrics.prometheus_source import (
    MoreThanOneServerError,
    PrometheusAnswerError,
    PrometheusQueryError,
    name_regex,
    page_from_vector,
    parse_query_answer,
    parse_series_answer,
    prometheus_headers,
    readings_query,
)


def test_selectors_parse_every_operator_and_both_quotes() -> None:
    matchers = parse_selector(' { namespace = "llm", pod=~\'vllm-.*\' ,zone!="a\\"b", tier!~"x|y", } ')
    assert matchers == (
        LabelMatcher("namespace", "=", "llm"),
        LabelMatcher("pod", "=~", "vllm-.*"),
        LabelMatcher("zone", "!=", 'a"b'),
        LabelMatcher("tier", "!~", "x|y"),
    )


def test_a_rendered_selector_parses_back_to_the_same_matchers() -> None:
    matchers = (LabelMatcher("pod", "=", 'we"ird\\value\n'), LabelMatcher("job", "=~", "vllm|tgi"))
    assert parse_selector(render_selector(matchers)) == matchers


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("pod='a'", 'starts with "{"'),
        ("{", "expected a label name"),
        ("{pod}", "expected one of"),
        ('{pod="a"', 'expected ","'),
        ('{pod="a}', "not closed"),
        ('{pod="\\q"}', "unknown escape"),
        ('{pod="a"} extra', "unexpected text"),
        ("{}", "at least one label matcher"),
        ('{pod=~".*"}', "empty string"),
        ('{pod!="x"}', "empty string"),
        ('{__name__="up"}', "__name__"),
        ('{pod=~"[a"}', "regular expression"),
        ('{1pod="a"}', "expected a label name"),
    ],
)
def test_selectors_that_cannot_name_one_server_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError, match=re.escape(fragment)):
        parse_selector(text)


def test_a_selector_with_one_non_empty_matcher_among_empty_ones_is_accepted() -> None:
    assert len(parse_selector('{pod=~".*",job="vllm"}')) == 2


def test_the_readings_query_selects_up_every_adapter_prefix_and_the_scrape_time_of_one_server() -> None:
    query = readings_query(
        ("vllm:time_to_first_token_seconds", "process_start_time_seconds"), parse_selector('{pod="p"}')
    )
    assert query == (
        '{__name__=~"up|(?:process_start_time_seconds|vllm:time_to_first_token_seconds).*",pod="p"}'
        ' or label_replace(timestamp({__name__=~"up",pod="p"}), "perf_agent_reading", "scraped_at", "", ".*")'
    )


def test_the_scrape_time_dates_the_reading_and_is_not_a_sample() -> None:
    target = {"job": "tgi", "instance": "10.0.0.5:80"}
    readings = [
        ({"__name__": "up", **target}, 1.0),
        ({"perf_agent_reading": "scraped_at", **target}, 1700000000.25),
        ({"__name__": "tgi_queue_size", **target}, 2.0),
    ]
    reading = page_from_vector(readings, frozenset())
    assert reading.scraped_at == 1700000000.25
    assert list(reading.page.series) == ["tgi_queue_size"]


def test_name_regex_escapes_re2_specials_and_matches_as_promql_anchors_it() -> None:
    pattern = name_regex(("a.b", "c+"))
    assert pattern == "(?:a\\.b|c\\+).*"
    assert re.fullmatch(pattern, "a.b_total")
    assert not re.fullmatch(pattern, "axb_total")


def _answer(result: list[dict[str, object]]) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def test_answers_parse_with_nan_and_infinities() -> None:
    body = _answer(
        [
            {"metric": {"__name__": "x_bucket", "le": "+Inf"}, "value": [1700000000.5, "+Inf"]},
            {"metric": {"__name__": "y"}, "value": [1700000000.5, "NaN"]},
            {"metric": {"__name__": "z"}, "value": [1700000000.5, "-Inf"]},
            {"metric": {"__name__": "w"}, "value": [1700000000.5, "1e+06"]},
        ]
    )
    values = [value for _, value in parse_query_answer(body)]
    assert values[0] == math.inf
    assert math.isnan(values[1])
    assert (values[2], values[3]) == (-math.inf, 1e6)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", PrometheusAnswerError),
        (b'{"status": "success"}', PrometheusAnswerError),
        (b'{"status": "success", "data": {"resultType": "matrix", "result": []}}', PrometheusAnswerError),
        (_answer([{"metric": {}, "value": [1, "many"]}]), PrometheusAnswerError),
        (b'{"status": "error", "errorType": "bad_data", "error": "parse error"}', PrometheusQueryError),
    ],
)
def test_answers_that_are_not_readings_raise(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_query_answer(body)


def test_query_errors_keep_the_error_type_and_text() -> None:
    with pytest.raises(PrometheusQueryError) as raised:
        parse_series_answer(b'{"status": "error", "errorType": "timeout", "error": "query timed out"}')
    assert (raised.value.error_type, raised.value.message) == ("timeout", "query timed out")


def test_series_answers_are_label_sets() -> None:
    body = b'{"status": "success", "data": [{"__name__": "up", "job": "vllm"}]}'
    assert parse_series_answer(body) == [{"__name__": "up", "job": "vllm"}]


TARGET = {"job": "vllm", "instance": "10.0.0.5:8000", "namespace": "llm", "pod": "vllm-0"}


def test_the_page_drops_every_label_of_the_target_and_keeps_the_engines() -> None:
    readings = [
        ({"__name__": "up", **TARGET}, 1.0),
        ({"__name__": "vllm:num_requests_running", "model_name": "m", "engine": "0", **TARGET}, 3.0),
        ({"__name__": "vllm:e2e_request_latency_seconds_bucket", "model_name": "m", "le": "+Inf", **TARGET}, 7.0),
    ]
    reading = page_from_vector(readings, frozenset({"namespace"}))
    page = reading.page
    assert reading.scraped_at is None
    assert set(page.series) == {"vllm:num_requests_running", "vllm:e2e_request_latency_seconds_bucket"}
    (running,) = page.series["vllm:num_requests_running"]
    assert (running.labels, running.value) == ({"model_name": "m", "engine": "0"}, 3.0)
    assert page.series["vllm:e2e_request_latency_seconds_bucket"][0].labels == {"model_name": "m", "le": "+Inf"}


def test_without_up_the_job_instance_and_matcher_labels_are_dropped() -> None:
    readings = [({"__name__": "tgi_queue_size", **TARGET}, 2.0)]
    (sample,) = page_from_vector(readings, frozenset({"namespace"})).page.series["tgi_queue_size"]
    assert sample.labels == {"pod": "vllm-0"}


def test_two_targets_are_more_than_one_server() -> None:
    readings = [({"__name__": "up", **TARGET}, 1.0), ({"__name__": "up", **TARGET, "instance": "b:1"}, 1.0)]
    with pytest.raises(MoreThanOneServerError, match="selects 2 scrape targets"):
        page_from_vector(readings, frozenset())


def test_series_equal_once_target_labels_are_dropped_are_more_than_one_server() -> None:
    readings = [
        ({"__name__": "tgi_queue_size", **TARGET}, 2.0),
        ({"__name__": "tgi_queue_size", **TARGET, "instance": "b:1"}, 2.0),
    ]
    with pytest.raises(MoreThanOneServerError, match="appears twice"):
        page_from_vector(readings, frozenset())


def test_prometheus_headers_are_header_to_variable_pairs() -> None:
    assert prometheus_headers(["X-Scope-OrgID=TENANT", " Authorization = PROM_AUTH "]) == {
        "X-Scope-OrgID": "TENANT",
        "Authorization": "PROM_AUTH",
    }
    for bad in ("X-Scope-OrgID", "=VAR", "Bad Header=VAR", "X=1VAR"):
        with pytest.raises(ValueError, match="Header-Name=ENV_VAR"):
            prometheus_headers([bad])
