"""Per-page caps (families, series, label values, value length) and reading large pages off the loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from performance_agent.metrics.exposition import ExpositionError, parse_page
from performance_agent.metrics.page_limits import PageLimitError, PageLimits
from performance_agent.metrics.page_reader import ScrapedPageReader, read_page

SMALL = PageLimits(max_families=5, max_series=10, max_label_values=3, max_label_value_length=8)
VLLM_LINE = 'vllm:num_requests_running{{model_name="{model}"}} 1\n'


def vllm_page(models: int) -> str:
    return "".join(VLLM_LINE.format(model=f"m{index}") for index in range(models))


def test_a_page_within_every_cap_parses() -> None:
    page = parse_page(vllm_page(3), limits=SMALL)
    assert len(page.series["vllm:num_requests_running"]) == 3


def test_too_many_families_stops_the_parse_naming_the_setting() -> None:
    text = "".join(f"metric_{index} 1\n" for index in range(6))
    with pytest.raises(PageLimitError, match=r"more metric families, more than PERF_AGENT_SCRAPE_MAX_FAMILIES \(5\)"):
        parse_page(text, limits=SMALL)


def test_declared_families_count_too() -> None:
    text = "".join(f"# TYPE metric_{index} gauge\n" for index in range(6))
    with pytest.raises(PageLimitError, match="PERF_AGENT_SCRAPE_MAX_FAMILIES"):
        parse_page(text, limits=SMALL)


def test_families_the_adapter_skips_count_against_the_family_cap() -> None:
    text = "".join(f"other_{index} 1\n" for index in range(6))
    with pytest.raises(PageLimitError, match="PERF_AGENT_SCRAPE_MAX_FAMILIES"):
        parse_page(text, keep=lambda name: name.startswith("vllm:"), limits=SMALL)


def test_too_many_series_stops_the_parse() -> None:
    text = "".join(f'vllm:x{{engine="{index % 2}",le="{index}"}} 1\n' for index in range(11))
    with pytest.raises(PageLimitError, match=r"PERF_AGENT_SCRAPE_MAX_SERIES \(10\)"):
        parse_page(text, limits=PageLimits(max_series=10))


def test_skipped_families_do_not_count_as_series() -> None:
    text = "".join(f'other{{i="{index}"}} 1\n' for index in range(50))
    page = parse_page(text, keep=lambda name: name.startswith("vllm:"), limits=SMALL)
    assert page.series == {}


def test_too_many_distinct_values_of_one_label_are_refused_naming_it() -> None:
    with pytest.raises(PageLimitError, match=r"label 'model_name'.*PERF_AGENT_SCRAPE_MAX_LABEL_VALUES \(3\)"):
        parse_page(vllm_page(4), limits=SMALL)


def test_label_values_are_counted_per_page_not_across_parses() -> None:
    for _ in range(3):  # the parser's caches remember label sets across calls
        parse_page(vllm_page(3), limits=SMALL)
    with pytest.raises(PageLimitError, match="PERF_AGENT_SCRAPE_MAX_LABEL_VALUES"):
        parse_page(vllm_page(3) + VLLM_LINE.format(model="m3"), limits=SMALL)


def test_values_of_skipped_families_are_not_counted() -> None:
    text = "".join(f'other{{model_name="m{index}"}} 1\n' for index in range(4)) + vllm_page(1)
    parse_page(text, keep=lambda name: name.startswith("vllm:"), limits=SMALL)


def test_a_label_value_too_long_is_refused() -> None:
    with pytest.raises(PageLimitError, match=r"9 characters long.*PERF_AGENT_SCRAPE_MAX_LABEL_VALUE_LENGTH \(8\)"):
        parse_page('vllm:x{model_name="abcdefghi"} 1\n', limits=SMALL)


def test_the_default_cap_holds_real_pages_and_refuses_the_issues_cardinality_attack() -> None:
    assert read_page(vllm_page(256), openmetrics=None, engine="vllm", limits=PageLimits()).outcome == "ok"
    refused = read_page(vllm_page(150_000), openmetrics=None, engine="vllm", limits=PageLimits())
    assert refused.outcome == "invalid"
    assert "PERF_AGENT_SCRAPE_MAX_SERIES" in refused.message or "MAX_LABEL_VALUES" in refused.message
    assert refused.adapted is None


def test_a_large_page_is_read_in_the_worker_process_with_the_same_result() -> None:
    text = vllm_page(200) + "".join(f"# HELP pad_{index} {'x' * 200}\n" for index in range(1500))

    async def both() -> None:
        reader = ScrapedPageReader(inline_max_bytes=1024)
        reader.start()
        try:
            remote = await reader.read(text.encode(), openmetrics=None, engine="vllm")
        finally:
            reader.close()
        inline = read_page(text, openmetrics=None, engine="vllm", limits=PageLimits())
        assert remote == inline
        assert remote.adapted is not None

    asyncio.run(both())


def test_a_page_over_the_time_budget_is_refused_and_the_worker_replaced() -> None:
    slow = "".join(f"metric_{index} 1\n" for index in range(400_000))

    async def scenario() -> None:
        reader = ScrapedPageReader(inline_max_bytes=1024, budget_s=0.05)
        reader.start()
        try:
            started = time.monotonic()
            refused = await reader.read(slow.encode(), openmetrics=None, engine="vllm")
            assert refused.outcome == "too_slow"
            assert "PERF_AGENT_SCRAPE_PARSE_BUDGET_S (0.05 s)" in refused.message
            assert time.monotonic() - started < 2.0
            reader.budget_s = 30.0
            fine = await reader.read((vllm_page(2) + "#" * 2048 + "\n").encode(), openmetrics=None, engine="vllm")
            assert fine.outcome == "ok"
        finally:
            reader.close()

    asyncio.run(scenario())


def test_a_page_larger_than_a_block_parses_as_one_piece() -> None:
    text = vllm_page(100) + "".join(f"# HELP pad_{index} {'x' * 100}\n" for index in range(20_000)) + "# EOF\n"
    assert len(text) > 1 << 20
    limits = PageLimits(max_families=100_000, max_label_values=1000)
    page = parse_page(text, limits=limits)
    assert len(page.series["vllm:num_requests_running"]) == 100
    assert len(page.families) == 20_001
    with pytest.raises(ExpositionError, match="content after # EOF"):
        parse_page(text + "\n" * 3 + "late 1\n", limits=limits)
