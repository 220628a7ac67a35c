"""Engine detection, the adapter registry, and the shared conversions."""

from __future__ import annotations

import pytest

from performance_agent.engines.base import combine_gauge, config_value, detect_engine, number_config
from performance_agent.engines.registry import SUPPORTED_ENGINES, UnknownEngineError, adapt_page, get_adapter
from performance_agent.engines.sglang import SglangAdapter
from performance_agent.engines.tgi import TgiAdapter
from performance_agent.engines.vllm import VllmAdapter
from performance_agent.metrics.exposition import parse_page
from performance_agent.readings.page import MetricsPage


@pytest.mark.parametrize(
    ("text", "engine"),
    [
        ('vllm:num_requests_running{model_name="m"} 1\nprocess_open_fds 3\n', "vllm"),
        ("tgi_request_count 1\n", "tgi"),
        ('sglang:num_running_reqs{model_name="m"} 1\n', "sglang"),
        # A family declared without samples still tells whose page it is.
        ("# TYPE sglang:num_aborted_requests_total counter\n", "sglang"),
        # The engine with the most families wins (e.g. a proxy adding one foreign series).
        (
            'tgi_queue_size 1\nvllm:num_requests_running{model_name="m"} 1\n'
            'vllm:num_requests_waiting{model_name="m"} 0\n',
            "vllm",
        ),
        ("process_open_fds 3\npython_info 1\n", None),
    ],
)
def test_detect_engine(text: str, engine: str | None) -> None:
    assert detect_engine(parse_page(text)) == engine


def test_detect_engine_on_an_empty_page() -> None:
    assert detect_engine(MetricsPage()) is None


def test_registry_serves_each_engine_and_refuses_others() -> None:
    assert SUPPORTED_ENGINES == ("sglang", "tgi", "vllm")
    assert isinstance(get_adapter("vllm"), VllmAdapter)
    assert isinstance(get_adapter("tgi"), TgiAdapter)
    assert isinstance(get_adapter("sglang"), SglangAdapter)
    with pytest.raises(UnknownEngineError, match="'triton'") as caught:
        get_adapter("triton")
    assert caught.value.engine == "triton"


def test_adapt_page_uses_the_named_engine() -> None:
    adapted = adapt_page("tgi", parse_page("tgi_queue_size 4\n"))
    assert adapted.engine == "tgi"
    assert adapted.total.gauges == {"requests_waiting": 4.0}
    # The same page read as vLLM holds nothing vLLM knows.
    assert adapt_page("vllm", parse_page("tgi_queue_size 4\n")).total.gauges == {}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16", 16),
        ("-3", -3),
        ("0.9", 0.9),
        ("1e-3", 0.001),
        ("True", True),
        ("false", False),
        ("None", None),
        ("auto", "auto"),
        ("fp8_e4m3", "fp8_e4m3"),
        ("sha256", "sha256"),
        ("", ""),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1.2.3", "1.2.3"),
        ("e", "e"),
    ],
)
def test_config_value(text: str, value: object) -> None:
    converted = config_value(text)
    assert converted == value
    assert type(converted) is type(value)


def test_number_config() -> None:
    assert number_config(4096.0) == 4096
    assert isinstance(number_config(4096.0), int)
    assert number_config(0.5) == 0.5
    assert number_config(float("inf")) is None


def test_combine_gauge_rules() -> None:
    assert combine_gauge("requests_running", [1.0, 2.0, 3.0]) == 6.0
    assert combine_gauge("requests_waiting", [4.0, 0.0]) == 4.0
    assert combine_gauge("kv_cache_usage", [0.2, 0.9, 0.5]) == 0.9
    assert combine_gauge("prefix_cache_hit_rate", [0.2, 0.4]) == pytest.approx(0.3)
    assert combine_gauge("requests_running", []) is None
