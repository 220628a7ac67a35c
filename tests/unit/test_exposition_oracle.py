"""Our parser against `prometheus_client`'s, on real pages and on pages that library renders itself."""

from __future__ import annotations

from collections import Counter as CounterOf
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics_exposition

from tests.bench.oracle import SampleKey, our_samples, reference_openmetrics_samples, reference_samples
from tests.bench.pages import realistic_vllm_page
from tests.paths import METRIC_PAGES

if TYPE_CHECKING:
    from collections.abc import Callable

FIXTURE_PAGES = sorted(METRIC_PAGES.glob("*.prom"))

NASTY_LABEL_VALUES = (
    "",
    'quote " inside',
    "back\\slash",
    "trailing backslash \\",
    "new\nline",
    "brace } and { and = and , inside",
    'all at once: \\" \\\\n }, "',
    ' # looks like an exemplar {a="b"} 1',
    "unicode: ü 数据 😀",
    "tab\there",
)


def _nasty_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("app_requests", "Requests by route.", ["route", "code"], registry=registry)
    for index, route in enumerate(NASTY_LABEL_VALUES):
        requests.labels(route, str(200 + index)).inc(index + 0.5)
    Counter("bare_events_total", "A counter declared with its suffix.", registry=registry).inc(7)
    temperature = Gauge(
        "room:temperature_celsius", 'Help with \\ backslash and\nnewline and "quotes".', ["room"], registry=registry
    )
    temperature.labels("lab").set(float("nan"))
    temperature.labels("attic").set(float("inf"))
    temperature.labels("cellar").set(float("-inf"))
    temperature.labels('a "quoted" room').set(-0.0)
    temperature.labels("tiny").set(1e-300)
    temperature.labels("huge").set(1.7976931348623157e308)
    latency = Histogram("rpc_latency_seconds", "Latency.", ["method"], buckets=(0.005, 0.1, 1, 2.5), registry=registry)
    for method, observations in (("get", (0.001, 0.2, 3.0)), ("put}", (0.1, 0.1)), ("", ())):
        child = latency.labels(method)
        for observation in observations:
            child.observe(observation)
    sizes = Summary("payload_bytes", "Payload sizes.", ["direction"], registry=registry)
    sizes.labels("in").observe(512)
    sizes.labels("out\\").observe(2048.5)
    Info("build", "Build information.", registry=registry).info({"version": "1.2.3", "commit": 'a"b\\c'})
    Enum("task_state", "Task state.", states=["starting", "running", "stopped"], registry=registry).state("running")
    return registry


def _assert_same_samples(ours: CounterOf[SampleKey], reference: CounterOf[SampleKey]) -> None:
    missing, extra = reference - ours, ours - reference
    assert (missing, extra) == (CounterOf(), CounterOf())
    assert ours == reference


@pytest.mark.parametrize("fixture", FIXTURE_PAGES, ids=[path.name for path in FIXTURE_PAGES])
def test_fixture_values_match_prometheus_client(fixture: Path) -> None:
    text = fixture.read_text(encoding="utf-8")
    reference = reference_samples(text)
    assert reference, "the fixture must hold samples, or the comparison proves nothing"
    _assert_same_samples(our_samples(text), reference)


def test_every_fixture_is_compared() -> None:
    assert len(FIXTURE_PAGES) >= 5


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(lambda: generate_latest(_nasty_registry()).decode(), id="generate_latest-nasty-labels"),
        pytest.param(lambda: realistic_vllm_page(ranks=2), id="realistic-vllm-2-ranks"),
        pytest.param(lambda: realistic_vllm_page(), id="realistic-vllm-8-ranks"),
        pytest.param(
            lambda: generate_latest(_nasty_registry()).decode().replace("\n", "\r\n"), id="generate_latest-crlf"
        ),
    ],
)
def test_rendered_pages_match_prometheus_client(text: Callable[[], str]) -> None:
    page_text = text()
    reference = reference_samples(page_text)
    assert len(reference) > 20
    _assert_same_samples(our_samples(page_text), reference)


def test_openmetrics_page_matches_openmetrics_parser() -> None:
    render: Callable[[CollectorRegistry], bytes] = openmetrics_exposition.generate_latest  # unannotated upstream
    text = render(_nasty_registry()).decode()
    assert text.endswith("# EOF\n")
    reference = reference_openmetrics_samples(text)
    assert any(key[0].endswith("_created") for key in reference)
    _assert_same_samples(our_samples(text), reference)


HAND_WRITTEN_TEXT_PAGES = {
    "timestamps-in-milliseconds": (
        '# TYPE jobs gauge\njobs{queue="a"} 3 1700000000000\njobs{queue="b"} 4 1700000000123\njobs 5\n'
    ),
    "special-values": "a NaN\nb +Inf\nc -Inf\nd Inf\ne -0\nf 1e-3\ng 12345678901234567890\nh +5\n",
    "trailing-comma-and-empty-set": 'm{a="1",} 1\nm{} 2\nm{ a = "x" , b="y" } 3\n',
    "blank-lines-and-comments": "\n\n# just a comment\nx 1\n\n#\n# TYPE y counter\ny 2\n\n",
    "colons-and-untyped": 'ns:sub:metric_total 1\nns:other{x="y"} 2\n',
    "tabs-and-spaces": 'm\t1\nm{a="b"}\t2\t1000\n  indented 3\n',
    "summary-with-quantiles": (
        '# TYPE rpc summary\nrpc{quantile="0.5"} 0.1\nrpc{quantile="0.99"} NaN\nrpc_sum 12.5\nrpc_count 100\n'
    ),
    "escapes": 'm{path="C:\\\\dir\\\\",msg="say \\"hi\\"\\nbye"} 1\n',
}


@pytest.mark.parametrize("text", HAND_WRITTEN_TEXT_PAGES.values(), ids=HAND_WRITTEN_TEXT_PAGES.keys())
def test_hand_written_pages_match_prometheus_client(text: str) -> None:
    _assert_same_samples(our_samples(text), reference_samples(text))


def test_openmetrics_timestamps_and_exemplars_match_openmetrics_parser() -> None:
    text = (
        "# TYPE req_seconds histogram\n"
        "# UNIT req_seconds seconds\n"
        'req_seconds_bucket{le="0.1"} 4 1700000001.5 # {trace_id="abc"} 0.05 1700000000.25\n'
        'req_seconds_bucket{le="+Inf"} 9 1700000001.5 # {trace_id="x y"} 7\n'
        "req_seconds_sum 3.5 1700000001.5\n"
        "req_seconds_count 9 1700000001.5\n"
        "req_seconds_created 1699990000.0 1700000001.5\n"
        "# EOF\n"
    )
    _assert_same_samples(our_samples(text), reference_openmetrics_samples(text))
