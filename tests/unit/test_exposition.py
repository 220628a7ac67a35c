"""What `parse_page` builds from a page, and how it refuses pages that are not exposition text."""

from __future__ import annotations

import math

import pytest

from performance_agent.metrics.exposition import ExpositionError, ParserCache, parse_page
from performance_agent.readings.page import Sample
from tests.paths import METRIC_PAGES


def test_histogram_samples_attach_to_the_declared_family_in_page_order() -> None:
    page = parse_page(
        "# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.\n"
        "# TYPE vllm:e2e_request_latency_seconds histogram\n"
        'vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3"} 2.0\n'
        'vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf"} 5.0\n'
        'vllm:e2e_request_latency_seconds_count{engine="0"} 5.0\n'
        'vllm:e2e_request_latency_seconds_sum{engine="0"} 7.25\n'
        'vllm:e2e_request_latency_seconds_bucket{engine="1",le="0.3"} 1.0\n'
    )
    family = page.families["vllm:e2e_request_latency_seconds"]
    assert (family.type, family.help) == ("histogram", "Histogram of e2e request latency in seconds.")
    assert [(s.name, s.labels, s.value) for s in family.samples] == [
        ("vllm:e2e_request_latency_seconds_bucket", {"engine": "0", "le": "0.3"}, 2.0),
        ("vllm:e2e_request_latency_seconds_bucket", {"engine": "0", "le": "+Inf"}, 5.0),
        ("vllm:e2e_request_latency_seconds_count", {"engine": "0"}, 5.0),
        ("vllm:e2e_request_latency_seconds_sum", {"engine": "0"}, 7.25),
        ("vllm:e2e_request_latency_seconds_bucket", {"engine": "1", "le": "0.3"}, 1.0),
    ]
    buckets = page.series["vllm:e2e_request_latency_seconds_bucket"]
    assert [s.labels["le"] for s in buckets] == ["0.3", "+Inf", "0.3"]
    assert page.series["vllm:e2e_request_latency_seconds_sum"] == [
        Sample("vllm:e2e_request_latency_seconds_sum", {"engine": "0"}, 7.25, None)
    ]
    assert list(page.families) == ["vllm:e2e_request_latency_seconds"]


@pytest.mark.parametrize(
    ("declared_type", "sample_names"),
    [
        ("counter", ("jobs_total", "jobs_created")),
        ("histogram", ("jobs_bucket", "jobs_sum", "jobs_count", "jobs_created")),
        ("summary", ("jobs", "jobs_sum", "jobs_count", "jobs_created")),
        ("gaugehistogram", ("jobs_bucket", "jobs_gsum", "jobs_gcount")),
        ("info", ("jobs_info",)),
        ("counter", ("jobs",)),
    ],
)
def test_suffixed_samples_belong_to_their_family(declared_type: str, sample_names: tuple[str, ...]) -> None:
    lines = [f"# TYPE jobs {declared_type}"] + [f"{name} {index}" for index, name in enumerate(sample_names)]
    page = parse_page("\n".join(lines) + "\n")
    assert list(page.families) == ["jobs"]
    assert [s.name for s in page.families["jobs"].samples] == list(sample_names)
    assert [page.series[name][0].value for name in sample_names] == [float(i) for i in range(len(sample_names))]


def test_a_suffix_the_type_does_not_allow_makes_its_own_untyped_family() -> None:
    page = parse_page('# TYPE temp gauge\ntemp 1\ntemp_total 2\ntemp_bucket{le="1"} 3\n')
    assert [(name, family.type, len(family.samples)) for name, family in page.families.items()] == [
        ("temp", "gauge", 1),
        ("temp_total", "untyped", 1),
        ("temp_bucket", "untyped", 1),
    ]


def test_a_later_declaration_of_the_exact_sample_name_takes_its_later_samples() -> None:
    page = parse_page("# TYPE a counter\na_total 1\n# TYPE a_total gauge\na_total 2\n")
    assert [s.value for s in page.families["a"].samples] == [1.0]
    assert [s.value for s in page.families["a_total"].samples] == [2.0]
    assert [s.value for s in page.series["a_total"]] == [1.0, 2.0]


def test_samples_without_type_get_an_untyped_family_named_after_the_sample() -> None:
    page = parse_page('orphan{a="1"} 1\norphan{a="2"} 2\nother_total 3\n')
    assert {name: (f.type, [s.value for s in f.samples]) for name, f in page.families.items()} == {
        "orphan": ("untyped", [1.0, 2.0]),
        "other_total": ("untyped", [3.0]),
    }


def test_prometheus_client_created_gauge_family_keeps_its_own_name() -> None:
    page = parse_page(
        "# TYPE vllm:prompt_tokens_total counter\n"
        'vllm:prompt_tokens_total{engine="0"} 12.0\n'
        "# TYPE vllm:prompt_tokens_created gauge\n"
        'vllm:prompt_tokens_created{engine="0"} 1.7e+09\n'
    )
    assert {name: f.type for name, f in page.families.items()} == {
        "vllm:prompt_tokens_total": "counter",
        "vllm:prompt_tokens_created": "gauge",
    }
    assert page.series["vllm:prompt_tokens_created"][0].value == 1.7e9


def test_help_only_family_from_a_cut_page_is_untyped_with_its_help() -> None:
    page = parse_page("# HELP tgi_queue_size Requests waiting\n")
    family = page.families["tgi_queue_size"]
    assert (family.type, family.help, family.samples) == ("untyped", "Requests waiting", [])
    assert page.series == {}


def test_type_after_help_and_unit_fill_the_same_family() -> None:
    page = parse_page("# HELP up_s Up.\n# TYPE up_s gauge\n# UNIT up_s seconds\nup_s 3\n# EOF\n")
    family = page.families["up_s"]
    assert (family.type, family.help, family.unit, family.samples[0].value) == ("gauge", "Up.", "seconds", 3.0)


def test_help_escapes_are_decoded() -> None:
    page = parse_page("# HELP a Line one\\nline two \\\\ done \\t kept\n# TYPE a gauge\na 1\n")
    assert page.families["a"].help == "Line one\nline two \\ done \\t kept"


def test_help_escaped_quote_is_only_decoded_in_openmetrics() -> None:
    text = '# HELP a Say \\"hi\\"\n# TYPE a gauge\na 1\n'
    assert parse_page(text).families["a"].help == 'Say \\"hi\\"'
    assert parse_page(text + "# EOF\n").families["a"].help == 'Say "hi"'


def test_label_value_escapes_are_decoded() -> None:
    page = parse_page('m{path="C:\\\\tmp\\\\",quote="\\"x\\"",text="a\\nb"} 1\n')
    assert page.series["m"][0].labels == {"path": "C:\\tmp\\", "quote": '"x"', "text": "a\nb"}


def test_label_value_holding_a_closing_brace_is_not_cut_short() -> None:
    page = parse_page('m{a="x"} 1\nm{a="x} 9"} 2\nm{a="x",b="}"} 3\nm{a="x"} 4\n')
    assert [(s.labels, s.value) for s in page.series["m"]] == [
        ({"a": "x"}, 1.0),
        ({"a": "x} 9"}, 2.0),
        ({"a": "x", "b": "}"}, 3.0),
        ({"a": "x"}, 4.0),
    ]


def test_each_sample_owns_its_labels() -> None:
    page = parse_page('m{a="x"} 1\nm{a="x"} 2\n')
    first, second = page.series["m"]
    first.labels["a"] = "changed"
    assert second.labels == {"a": "x"}


def test_label_sets_remembered_from_an_earlier_page_do_not_mislead_a_later_one() -> None:
    cache = ParserCache()
    parse_page('m{a="x"} 1\nm{a="x",b="y"} 2\n', cache=cache)
    later = parse_page('m{a="x} {b=\\"y\\"} 3"} 3\nm{a="x",b="y}"} 4\nm{a="x"} 5\n', cache=cache)
    assert [(s.labels, s.value) for s in later.series["m"]] == [
        ({"a": 'x} {b="y"} 3'}, 3.0),
        ({"a": "x", "b": "y}"}, 4.0),
        ({"a": "x"}, 5.0),
    ]
    with pytest.raises(ExpositionError, match=r"^line 1: invalid value"):
        parse_page('m{a="x"}b="y"} 6\n', cache=cache)


def test_a_cache_is_forgotten_past_its_bound() -> None:
    cache = ParserCache(limit=5)
    many = "".join(f'm{{i="{index}"}} {index}\n' for index in range(20))
    parse_page(many, cache=cache)
    assert len(cache.labels) == 20
    page = parse_page('m{i="3"} 7\n', cache=cache)
    assert len(cache.labels) == 1
    assert page.series["m"] == [Sample("m", {"i": "3"}, 7.0, None)]


def test_special_values_and_empty_label_sets() -> None:
    page = parse_page('a NaN\nb{} +Inf\nc{x="1",} -Inf\nd Inf\ne -0.0\nf 1.5e-3\n')
    values = {name: samples[0].value for name, samples in page.series.items()}
    assert math.isnan(values["a"])
    assert (values["b"], values["c"], values["d"], values["e"], values["f"]) == (
        math.inf,
        -math.inf,
        math.inf,
        0.0,
        0.0015,
    )
    assert page.series["b"][0].labels == {}
    assert page.series["c"][0].labels == {"x": "1"}


def test_text_format_timestamps_are_milliseconds_stored_as_seconds() -> None:
    page = parse_page('m{a="b"} 1 1700000000123\nn 2 -5000\n')
    assert page.series["m"][0].timestamp == 1700000000.123
    assert page.series["n"][0].timestamp == -5.0


def test_openmetrics_timestamps_are_seconds_kept_as_given() -> None:
    text = "# TYPE m gauge\nm 1 1700000000.5\n"
    assert parse_page(text + "# EOF\n").series["m"][0].timestamp == 1700000000.5
    assert parse_page(text, openmetrics=True).series["m"][0].timestamp == 1700000000.5
    assert parse_page(text, openmetrics=False).series["m"][0].timestamp == 1700000.0005


def test_exemplars_are_ignored() -> None:
    page = parse_page(
        "# TYPE h histogram\n"
        'h_bucket{le="1"} 3 # {trace_id="a b } c"} 0.5 1700000000\n'
        'h_bucket{le="+Inf"} 4 1700000001 # {trace_id="d"} 9\n'
        "h_count 4 # {} 1\n"
        "# EOF\n"
    )
    assert [(s.value, s.timestamp) for s in page.families["h"].samples] == [
        (3.0, None),
        (4.0, 1700000001.0),
        (4.0, None),
    ]
    assert page.series["h_bucket"][0].labels == {"le": "1"}


def test_crlf_blank_lines_comments_and_blanks_around_tokens() -> None:
    text = '# a comment\r\n\r\n#\r\n  # TYPE m counter\r\n\tm_total{ a = "1" , } 5 \r\n\r\nns:x:y\t7\r\n'
    page = parse_page(text)
    assert page.families["m"].type == "counter"
    assert page.series["m_total"] == [Sample("m_total", {"a": "1"}, 5.0, None)]
    assert page.series["ns:x:y"][0].value == 7.0


def test_repeated_type_with_the_same_type_is_accepted() -> None:
    page = parse_page("# TYPE a gauge\na 1\n# TYPE a gauge\na 2\n")
    assert [s.value for s in page.families["a"].samples] == [1.0, 2.0]


def test_sample_before_its_type_line_gets_the_declared_type() -> None:
    page = parse_page("a 1\n# TYPE a gauge\na 2\n")
    assert (page.families["a"].type, len(page.families["a"].samples)) == ("gauge", 2)


def test_empty_page_and_eof_only_page() -> None:
    assert parse_page("") == parse_page("# EOF\n") == parse_page("\n\n")
    assert parse_page("").families == {}


@pytest.mark.parametrize(
    ("fixture", "series", "labels", "value"),
    [
        ("tgi-aiongke-grep-request-count.prom", "tgi_request_count", {}, 1.0),
        ("vllm-prodstack318-v1-0.8.prom", "process_max_fds", {}, 1048576.0),
        (
            "vllm-prodstack318-v1-0.8.prom",
            "vllm:num_requests_running",
            {"model_name": "Qwen/Qwen2.5-Coder-32B-Instruct"},
            0.0,
        ),
        ("vllm-aibrix-runtime-docs-v0.7.prom", "vllm:gpu_prefix_cache_hit_rate", None, -1.0),
        ("vllm-aibrix-runtime-docs-v0.7.prom", "vllm:lora_requests_info", None, 1.7382173358407154e09),
    ],
)
def test_fixture_values(fixture: str, series: str, labels: dict[str, str] | None, value: float) -> None:
    page = parse_page((METRIC_PAGES / fixture).read_text(encoding="utf-8"))
    sample = page.series[series][0]
    assert sample.value == value
    if labels is not None:
        assert sample.labels == labels


def test_fixture_families_and_types() -> None:
    page = parse_page((METRIC_PAGES / "vllm-aibrix-runtime-docs-v0.7.prom").read_text(encoding="utf-8"))
    assert page.families["vllm:cache_config_info"].samples[0].labels["num_gpu_blocks"] == "81767"
    assert page.families["vllm:num_preemptions_total"].type == "counter"
    tgi = parse_page((METRIC_PAGES / "tgi-aiongke-grep-request-count.prom").read_text(encoding="utf-8"))
    assert tgi.families["tgi_request_count"].type == "counter"
    assert [s.name for s in tgi.families["tgi_request_count"].samples] == ["tgi_request_count"]


@pytest.mark.parametrize(
    ("text", "line_number", "reason"),
    [
        ("a 1\nb xyz\n", 2, "invalid value 'xyz'"),
        ("a 1\nb 1_000\n", 2, "invalid value '1_000'"),
        ('a 1\n\nb{c="d"} 1_0 # {} 1\n', 3, "invalid value '1_0'"),
        ('# TYPE a gauge\na{b="c} 1\n', 2, "unterminated label value"),
        ('a{b="c\\"} 1\n', 1, "unterminated label value"),
        ('a 1\na{b="\\t"} 1\n', 2, "invalid escape sequence '\\t' in label value"),
        ('a{b="c\\', 1, "unterminated label value"),
        ('a{b="c\\x"} 1', 1, "invalid escape sequence '\\x' in label value"),
        ('x 1\ny{b="c"}\n', 2, "missing value"),
        ("x 1\ny\n", 2, "missing value"),
        ('x 1\ny # {a="b"} 1\n', 2, "missing value"),
        ("ok 1\nthis is not a metric!\n", 2, "invalid value 'is'"),
        ("ok 1\n<html><body>502 Bad Gateway</body></html>\n", 2, "invalid metric name"),
        ("{} 1\n", 1, "invalid metric name"),
        ("a-b 1\n", 1, "invalid character '-' after metric name"),
        ('a{b="c",,d="e"} 1\n', 1, "invalid label name ',d'"),
        ('a{1b="c"} 1\n', 1, "invalid label name '1b'"),
        ("a{b=c} 1\n", 1, "value of label 'b' is not quoted"),
        ('a{b="c" d="e"} 1\n', 1, "expected ',' or '}' after label 'b'"),
        ('a{b="c",b="d"} 1\n', 1, "duplicate label 'b'"),
        ('a{b="c"', 1, "unterminated label set"),
        ('a{b="c"x 1\n', 1, "expected ',' or '}' after label 'b'"),
        ("a{b} 1\n", 1, "label without '='"),
        ("a 1 2 3\n", 1, "unexpected text after timestamp: '3'"),
        ("a 1 soon\n", 1, "invalid timestamp 'soon'"),
        ("a 1 NaN\n", 1, "invalid timestamp 'NaN'"),
        ("# TYPE a gauge\n# TYPE a counter\n", 2, "a declared counter after gauge"),
        ("# TYPE a\n", 1, "unknown metric type ''"),
        ("# TYPE a histogramm\n", 1, "unknown metric type 'histogramm'"),
        ("# HELP\n", 1, "# HELP without a metric name"),
        ("# HELP 9lives text\n", 1, "invalid metric name '9lives' in # HELP"),
        ("a 1\n# EOF\nb 2\n", 3, "content after # EOF"),
        ("a 1\n# EOF\n\n  \n# EOF\n", 5, "content after # EOF"),
    ],
)
def test_garbage_raises_with_the_line_number(text: str, line_number: int, reason: str) -> None:
    with pytest.raises(ExpositionError) as raised:
        parse_page(text)
    assert raised.value.line_number == line_number
    assert raised.value.reason == reason
    assert str(raised.value).startswith(f"line {line_number}: {reason}")
    assert isinstance(raised.value, ValueError)


def test_error_line_numbers_count_crlf_and_blank_lines() -> None:
    with pytest.raises(ExpositionError, match=r"^line 4: invalid value 'oops'") as raised:
        parse_page("a 1\r\n\r\n# c\r\nb oops\r\n")
    assert raised.value.line_number == 4


def test_error_message_quotes_the_offending_line_shortened() -> None:
    with pytest.raises(ExpositionError) as raised:
        parse_page("bad value " + "x" * 500 + "\n")
    message = str(raised.value)
    assert "in 'bad value xxx" in message
    assert len(message) < 220
