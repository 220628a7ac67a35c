"""Properties of the parser over generated input: escaping round-trips, cut pages, and its caches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from performance_agent.metrics.exposition import ParserCache, parse_page
from performance_agent.metrics.exposition_grammar import learn_plain_labels, read_labels
from tests.bench.pages import realistic_vllm_page
from tests.paths import METRIC_PAGES

METRIC_NAMES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True)
LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
LABEL_VALUES = st.text(max_size=20)
SUFFIXES = {
    "counter": ("_total", "_created", ""),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "untyped": ("",),
    "info": ("_info",),
}


def escape_label_value(value: str) -> str:
    """The text-format escaping, written from the format's documentation rather than from the parser."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_labels(labels: dict[str, str]) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())


def render_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def same_value(left: float, right: float) -> bool:
    return (math.isnan(left) and math.isnan(right)) or left == right


@given(value=LABEL_VALUES, other=LABEL_VALUES)
def test_label_values_round_trip_through_escaping(value: str, other: str) -> None:
    labels = {"a": value, "b": other}
    text = f'm{{{render_labels(labels)}}} 1\nm{{{render_labels(labels)}}} 2\nm{{b="{escape_label_value(other)}"}} 3\n'
    samples = parse_page(text).series["m"]
    assert [s.labels for s in samples] == [labels, labels, {"b": other}]
    reference = [s.labels for family in text_string_to_metric_families(text) for s in family.samples]
    assert reference == [labels, labels, {"b": other}]


@given(help_text=st.text(max_size=40).filter(lambda text: text == text.strip()))
def test_help_text_round_trips_through_escaping(help_text: str) -> None:
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    page = parse_page(f"# HELP m {escaped}\n# TYPE m gauge\nm 1\n")
    assert page.families["m"].help == help_text


@dataclass(frozen=True)
class GeneratedSample:
    name: str
    labels: dict[str, str]
    value: float
    timestamp_ms: int | None


@st.composite
def generated_pages(draw: st.DrawFn) -> tuple[list[str], list[GeneratedSample | None]]:
    """Page lines and, per line, the sample it holds (None for HELP/TYPE/blank/comment lines)."""
    names = draw(st.lists(METRIC_NAMES, min_size=1, max_size=5, unique=True))
    lines: list[str] = []
    expected: list[GeneratedSample | None] = []
    for name in names:
        family_type = draw(st.sampled_from(sorted(SUFFIXES)))
        if draw(st.booleans()):
            help_text = draw(st.text(max_size=15)).replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"# HELP {name} {help_text}")
            expected.append(None)
        lines.append(f"# TYPE {name} {family_type}")
        expected.append(None)
        for _ in range(draw(st.integers(0, 6))):
            sample_name = name + draw(st.sampled_from(SUFFIXES[family_type]))
            labels = draw(st.dictionaries(LABEL_NAMES, LABEL_VALUES, max_size=3))
            value = draw(st.floats(allow_nan=True, allow_infinity=True))
            timestamp_ms = draw(st.none() | st.integers(-(10**13), 10**13))
            with_braces = bool(labels) or draw(st.booleans())
            label_text = f"{{{render_labels(labels)}}}" if with_braces else ""
            stamp = "" if timestamp_ms is None else f" {timestamp_ms}"
            lines.append(f"{sample_name}{label_text} {render_value(value)}{stamp}")
            expected.append(GeneratedSample(sample_name, labels, value, timestamp_ms))
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(("", "# a comment", "#"))))
            expected.append(None)
    return lines, expected


def assert_page_holds(text: str, expected: list[GeneratedSample]) -> None:
    page = parse_page(text)
    by_name: dict[str, list[GeneratedSample]] = {}
    for sample in expected:
        by_name.setdefault(sample.name, []).append(sample)
    assert set(page.series) == set(by_name)
    for name, wanted in by_name.items():
        got = page.series[name]
        assert [s.labels for s in got] == [w.labels for w in wanted]
        assert all(same_value(s.value, w.value) for s, w in zip(got, wanted, strict=True))
        assert [s.timestamp for s in got] == [None if w.timestamp_ms is None else w.timestamp_ms / 1000 for w in wanted]
    assert sum(len(family.samples) for family in page.families.values()) == len(expected)


@pytest.mark.slow
@settings(max_examples=60)
@given(generated=generated_pages())
def test_every_line_boundary_prefix_parses_to_the_samples_it_holds(
    generated: tuple[list[str], list[GeneratedSample | None]],
) -> None:
    lines, per_line = generated
    for cut in range(len(lines) + 1):
        held = [sample for sample in per_line[:cut] if sample is not None]
        assert_page_holds("".join(line + "\n" for line in lines[:cut]), held)
        assert_page_holds("\n".join(lines[:cut]), held)
        assert_page_holds("\r\n".join(lines[:cut]), held)


def _prefix_pages() -> list[tuple[str, str]]:
    pages = [(path.name, path.read_text(encoding="utf-8")) for path in sorted(METRIC_PAGES.glob("*.prom"))]
    return [*pages, ("realistic-vllm-1-rank", realistic_vllm_page(ranks=1))]


@pytest.mark.parametrize(("name", "text"), _prefix_pages(), ids=[name for name, _ in _prefix_pages()])
def test_every_prefix_of_real_pages_parses_to_a_prefix_of_the_whole(name: str, text: str) -> None:
    whole = parse_page(text)
    lines = text.splitlines(keepends=True)
    assert len(lines) > 1, name
    for cut in range(len(lines) + 1):
        part = parse_page("".join(lines[:cut]))
        for series_name, samples in part.series.items():
            assert samples == whole.series[series_name][: len(samples)]
        held = sum(1 for line in lines[:cut] if line.strip() and not line.startswith("#"))
        assert sum(len(samples) for samples in part.series.values()) == held


LABEL_TEXT_PIECES = st.lists(
    st.sampled_from(['a="x"', 'b="}"', 'c=""', ",", " ", '"', "=", "}", "{", "a", "\\", 'd="y,z"', "\t"]),
    max_size=8,
).map("".join)


@settings(max_examples=300)
@given(label_text=LABEL_TEXT_PIECES | st.text(alphabet='ab=",{} \\', max_size=16))
@example(label_text='a="x"d="y,z"')
@example(label_text=',a="x"')
@example(label_text='a="x",,b="y"')
@example(label_text='a="x",a="y"')
@example(label_text='a="x",')
@example(label_text='a="x')
def test_fast_label_split_agrees_with_the_general_label_parser(label_text: str) -> None:
    """Whenever the fast split accepts a label text, the general parser reads the very same labels from it."""
    fast = learn_plain_labels(label_text, {}, {})
    if fast is None:
        return
    general, close = read_labels(label_text + "} 1", 0, 1)
    assert (general, close) == (fast, len(label_text))


PLAIN_VALUES = st.text(max_size=12).filter(lambda value: not any(char in value for char in '\\"\n'))


@given(labels=st.dictionaries(LABEL_NAMES, PLAIN_VALUES, min_size=1, max_size=4), trailing_comma=st.booleans())
def test_fast_label_split_accepts_every_plainly_written_set(labels: dict[str, str], trailing_comma: bool) -> None:
    label_text = render_labels(labels) + ("," if trailing_comma else "")
    cache: dict[str, dict[str, str]] = {}
    assert learn_plain_labels(label_text, cache, {}) == labels
    assert cache == {label_text: labels}


LINE_POOL = st.sampled_from(
    [
        'm{a="x"} 1',
        'm{a="x} 2"} 2',
        'm{a="x",b="}"} 3',
        'm{a="x\\"}"} 4',
        'm{a="x"}x="y"} 5',
        'm{b="y",a="x"} 6',
        "m 7",
        'm {a="x"} 8',
        'n_total{a="x",} 9',
        'm{a="x"} 10 # {a="x"} 1',
    ]
)


def _parse_or_error(text: str, cache: ParserCache) -> list[object]:
    try:
        return sorted((repr(s) for samples in parse_page(text, cache=cache).series.values() for s in samples), key=str)
    except ValueError:
        return ["error"]


@given(lines=st.lists(LINE_POOL, max_size=12))
def test_a_page_parses_like_its_lines_parsed_one_by_one(lines: list[str]) -> None:
    """The label and name caches, cold or warmed by other pages, never change a result."""
    cache = ParserCache()
    cold = _parse_or_error("\n".join(lines), cache)
    one_by_one: list[object] = []
    for line in lines:
        alone = _parse_or_error(line, cache)
        one_by_one.extend(alone)
        if alone == ["error"]:
            break
    warm = _parse_or_error("\n".join(lines), cache)
    expected = ["error"] if "error" in one_by_one else sorted(one_by_one, key=str)
    assert cold == warm == expected
