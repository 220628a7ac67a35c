"""Parsing only the families an adapter `reads` must not change what the adapter makes of a page.

Checked on every real fixture page and on every metric-name generation the simulator emits
(current and older names of each engine), with load, faults and several data-parallel ranks, so
a name an adapter starts reading without listing it in `reads` fails here.
"""

from __future__ import annotations

import pytest

from performance_agent.engines.base import detect_engine
from performance_agent.engines.registry import ADAPTERS, FAMILY_FILTERS, adapt_page
from performance_agent.metrics.exposition import parse_page
from performance_agent.simulator import ManualClock
from performance_agent.simulator.instance import SimulatedInstance, SimulatedServerSpec
from performance_agent.simulator.pages import ENGINES
from tests.paths import METRIC_PAGES

FIXTURE_ENGINES = {"vllm": "vllm", "tgi": "tgi", "sglang": "sglang"}


def _fixture_pages() -> list[tuple[str, str, str]]:
    return [(path.name, path.name.split("-")[0], path.read_text()) for path in sorted(METRIC_PAGES.glob("*.prom"))]


def _simulated_pages() -> list[tuple[str, str, str]]:
    pages = []
    for engine, binding in ENGINES.items():
        for version in binding.versions:
            clock = ManualClock(1_700_000_000.0)
            flags = {"--data-parallel-size": 2} if engine == "vllm" else {}
            spec = SimulatedServerSpec(engine=engine, version=version, seed=7, flags=flags)
            instance = SimulatedInstance(spec, f"{engine}-{version}", clock)
            instance.metrics_text()
            clock.advance(30.0)
            pages.append((f"simulated {engine} {version}", engine, instance.metrics_text()))
    return pages


PAGES = _fixture_pages() + _simulated_pages()


@pytest.mark.parametrize(("label", "engine", "text"), PAGES, ids=[label for label, _, _ in PAGES])
def test_filtered_parse_adapts_identically(label: str, engine: str, text: str) -> None:
    full = parse_page(text)
    filtered = parse_page(text, keep=FAMILY_FILTERS[engine])
    assert adapt_page(engine, filtered) == adapt_page(engine, full), label
    assert detect_engine(filtered) == detect_engine(full), label
    assert set(filtered.families) == set(full.families)
    assert set(filtered.series) <= set(full.series)


@pytest.mark.parametrize("engine", sorted(ADAPTERS))
def test_the_filter_really_skips_families(engine: str) -> None:
    _, _, text = next(page for page in PAGES if page[0].startswith(f"simulated {engine} current"))
    full = parse_page(text)
    filtered = parse_page(text, keep=FAMILY_FILTERS[engine])
    skipped = set(full.series) - set(filtered.series)
    assert skipped, "every engine's page has families its adapter does not read"
    assert all(not filtered.families[name].samples for name in filtered.families if not FAMILY_FILTERS[engine](name))


def test_a_page_of_another_engine_is_still_recognised() -> None:
    _, _, tgi_text = next(page for page in PAGES if page[0] == "simulated tgi current")
    filtered = parse_page(tgi_text, keep=FAMILY_FILTERS["vllm"])
    assert filtered.series == {} or all(not name.startswith("tgi_") for name in filtered.series)
    assert detect_engine(filtered) == "tgi"
