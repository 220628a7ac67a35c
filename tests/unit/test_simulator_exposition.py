"""The simulator's hand-written exposition styles, checked against the real client libraries."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client import Histogram as ClientHistogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from performance_agent.simulator.exposition import (
    Histogram,
    MultiprocessPage,
    PythonClientPage,
    RustExporterPage,
    Summary,
    go_float,
    rust_float,
)

CREATED = re.compile(r"^(\S+_created(?:\{[^}]*\})?) \S+$", re.MULTILINE)


@pytest.mark.parametrize(
    "value",
    [0.0, 1.0, 0.1, 2560.0, 1234567.0, 1.7e9, 1e-7, 123456.789, 1e22, -5.0, math.inf, -math.inf, 0.075, 7680.0],
)
def test_go_float_matches_prometheus_client(value: float) -> None:
    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


def test_go_float_nan() -> None:
    assert go_float(math.nan) == "NaN"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1e21, "1000000000000000000000"),
        (1.5e-7, "0.00000015"),
        (0.0001 * 1.5, "0.00015000000000000001"),
        (409.54999999999995, "409.54999999999995"),
        (174022.0, "174022"),
        (math.inf, "inf"),
    ],
)
def test_rust_float_is_rust_display(value: float, expected: str) -> None:
    assert rust_float(value) == expected


def test_histogram_le_semantics_and_cumulative_counts() -> None:
    hist = Histogram((1.0, 2.0, 5.0))
    for value in (0.5, 1.0, 1.5, 2.0, 7.0):
        hist.observe(value)
    assert hist.cumulative() == [2, 4, 4, 5]
    assert hist.count == 5
    assert hist.total == pytest.approx(12.0)


def test_weighted_observations_stay_whole_and_conserve_weight() -> None:
    hist = Histogram((0.1, 1.0))
    for _ in range(10):
        hist.observe_weighted(0.05, 0.35)
    assert hist.count == 3  # 3.5 observed, the half waits for the next call
    assert hist.carry == pytest.approx(0.5)
    hist.observe_weighted(0.05, 0.5)
    assert hist.count == 4
    assert hist.cumulative() == [4, 4, 4]


def test_summary_quantiles_are_nearest_rank_over_the_window() -> None:
    summary = Summary()
    for value in range(1, 101):
        summary.observe(float(value))
    assert summary.quantile(0.0) == 1.0
    assert summary.quantile(0.5) == 50.0
    assert summary.quantile(0.99) == 99.0
    assert summary.quantile(1.0) == 100.0
    assert summary.count == 100
    assert Summary().quantile(0.5) == 0.0


def test_python_client_page_is_byte_identical_to_generate_latest() -> None:
    labels = {"model_name": 'm"1\\x\n', "engine": "0"}
    registry = CollectorRegistry()
    counter = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", list(labels), registry=registry)
    counter.labels(**labels).inc(148)
    hist = ClientHistogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram\nof e2e.",
        list(labels),
        buckets=[0.3, 1.0, 7680.0],
        registry=registry,
    )
    for value in (0.2, 0.5, 9000.0):
        hist.labels(**labels).observe(value)
    gauge = Gauge("vllm:num_requests_running", "Running.", list(labels), registry=registry)
    gauge.labels(**labels).set(3)
    expected = generate_latest(registry).decode()

    ours_hist = Histogram((0.3, 1.0, 7680.0))
    for value in (0.2, 0.5, 9000.0):
        ours_hist.observe(value)
    page = PythonClientPage()
    page.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", labels, 148.0, 1.0)
    page.histogram("vllm:e2e_request_latency_seconds", "Histogram\nof e2e.", labels, ours_hist, 1.0)
    page.gauge("vllm:num_requests_running", "Running.", labels, 3.0)
    ours = page.text()
    assert CREATED.sub(r"\1 T", ours) == CREATED.sub(r"\1 T", expected)
    assert ours.count("_created{") == 2


def test_counter_without_created_has_no_created_family() -> None:
    page = PythonClientPage()
    page.counter("process_cpu_seconds", "CPU.", {}, 2.5, None)
    assert page.text().splitlines() == [
        "# HELP process_cpu_seconds_total CPU.",
        "# TYPE process_cpu_seconds_total counter",
        "process_cpu_seconds_total 2.5",
    ]


MULTIPROCESS_ORACLE = textwrap.dedent(
    """
    import os, sys, tempfile
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    labels = {"model_name": "m", "engine_type": "unified"}
    Counter("sglang:prompt_tokens_total", "Prompt tokens.", list(labels)).labels(**labels).inc(7)
    usage = Gauge("sglang:token_usage", "The token usage.", list(labels), multiprocess_mode="mostrecent")
    usage.labels(**labels).set(0.28)
    h = Histogram("sglang:e2e_request_latency_seconds", "E2E.", list(labels), buckets=[0.3, 1.0, 60.0])
    for v in (0.2, 0.5, 100.0):
        h.labels(**labels).observe(v)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    sys.stdout.write(generate_latest(registry).decode())
    """
)


def _blocks(text: str) -> set[str]:
    return {"# HELP" + block for block in text.split("# HELP") if block}


@pytest.mark.e2e
def test_multiprocess_page_matches_the_multiprocess_collector() -> None:
    expected = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_ORACLE], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    hist = Histogram((0.3, 1.0, 60.0))
    for value in (0.2, 0.5, 100.0):
        hist.observe(value)
    labels = {"model_name": "m", "engine_type": "unified"}
    page = MultiprocessPage()
    page.counter("sglang:prompt_tokens", "Prompt tokens.", labels, 7.0)
    page.gauge("sglang:token_usage", "The token usage.", labels, 0.28)
    page.histogram("sglang:e2e_request_latency_seconds", "E2E.", labels, hist)
    # the collector orders families by its files, so compare family blocks as a set
    assert _blocks(page.text()) == _blocks(expected)
    assert "_created" not in page.text()


def test_rust_page_shape() -> None:
    hist = Histogram((0.00015000000000000001, 1.0))
    hist.observe(0.5)
    summary = Summary()
    summary.observe(0.0, 3)
    page = RustExporterPage(
        {"tgi_request_count": "Total number of requests", "tgi_request_duration": "Request duration"}
    )
    page.counter("tgi_request_count", (), 5)
    page.counter("tgi_request_failure", (("err", "overloaded"),), 2)
    page.gauge("tgi_queue_size", (), 3.0)
    page.histogram("tgi_request_duration", (), hist)
    page.summary("tgi_request_skipped_tokens", (), summary)
    text = page.text()
    assert (
        text.split("\n\n")[0]
        == "# HELP tgi_request_count Total number of requests\n# TYPE tgi_request_count counter\ntgi_request_count 5"
    )
    assert '# TYPE tgi_request_failure counter\ntgi_request_failure{err="overloaded"} 2\n\n' in text
    assert "tgi_queue_size 3\n" in text
    assert 'tgi_request_duration_bucket{le="0.00015000000000000001"} 0\n' in text
    assert (
        'tgi_request_duration_bucket{le="+Inf"} 1\ntgi_request_duration_sum 0.5\ntgi_request_duration_count 1\n' in text
    )
    assert 'tgi_request_skipped_tokens{quantile="0.999"} 0\n' in text
    assert "_total" not in text
    assert "_created" not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["tgi_request_skipped_tokens"].type == "summary"
    assert [s.labels["quantile"] for s in families["tgi_request_skipped_tokens"].samples[:7]] == [
        "0",
        "0.5",
        "0.9",
        "0.95",
        "0.99",
        "0.999",
        "1",
    ]
    assert families["tgi_request_count"].samples[0].value == 5


def test_large_counts_use_go_exponents_like_the_client() -> None:
    hist = Histogram((0.1,))
    hist.observe(0.05, 12_345_678)
    python_style = PythonClientPage()
    python_style.histogram("x", "X.", {"model_name": "m"}, hist, 1.0)
    multiprocess = MultiprocessPage()
    multiprocess.histogram("x", "X.", {"model_name": "m"}, hist)
    expected_bucket = f'x_bucket{{le="0.1",model_name="m"}} {floatToGoString(12_345_678)}\n'  # type: ignore[no-untyped-call]
    for text in (python_style.text(), multiprocess.text()):
        assert expected_bucket in text
        assert "1.2345678e+07" in text
    rust = RustExporterPage({})
    rust.histogram("x", (), hist)
    assert 'x_bucket{le="0.1"} 12345678\n' in rust.text()  # Rust writes counts as integers
