"""Scrape processing: our parse + vLLM adaptation vs `prometheus_client.parser` alone, same page, same run.

"Ours" is what `CollectionService` runs: `parse_page(keep=...)` parses only the families the
vLLM adapter reads (the others are declared but their samples skipped), then `adapt_page`. The
full parser's values are first checked identical to the reference on the same page.
The two sides take turns (ours, reference, ours, ...) and the best of N is kept for each, so
background load on this shared machine hits both alike. "First" clears the parser's label cache
before each run (a page never seen); "repeat" keeps it (the steady state of a scraper that reads
the same servers every interval).
"""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from performance_agent.engines.registry import FAMILY_FILTERS, adapt_page
from performance_agent.metrics.exposition import ParserCache, parse_page
from tests.bench.figures import Figure
from tests.bench.oracle import our_samples, reference_samples
from tests.bench.pages import realistic_vllm_page

COMMAND = "make bench  (tests/bench/scrape_bench.py)"


#: The scraper's parser cache (one per collection service); `clear` empties it, as at start-up.
_CACHE = ParserCache()


def _ours(text: str, clear: bool) -> float:
    """The scraper's own path: parse the families the vLLM adapter reads, then adapt."""
    if clear:
        _CACHE.clear()
    started = time.perf_counter()
    adapt_page("vllm", parse_page(text, keep=FAMILY_FILTERS["vllm"], cache=_CACHE))
    return time.perf_counter() - started


def _reference(text: str) -> float:
    started = time.perf_counter()
    for family in text_string_to_metric_families(text):
        len(family.samples)
    return time.perf_counter() - started


def run(rounds: int = 15) -> list[Figure]:
    figures: list[Figure] = []
    for ranks in (8, 2):
        text = realistic_vllm_page(ranks)
        if our_samples(text) != reference_samples(text):
            raise AssertionError("parse_page and prometheus_client.parser disagree on the benchmark page")
        first, repeat, reference = float("inf"), float("inf"), float("inf")
        for _ in range(rounds):
            first = min(first, _ours(text, clear=True))
            reference = min(reference, _reference(text))
            repeat = min(repeat, _ours(text, clear=False))
        size = f"{len(text.encode()) / 1024:.0f} KiB, {ranks} DP ranks"
        section = "Scrape processing (parse + vLLM adaptation vs prometheus_client.parser alone, best of 15)"
        figures += [
            Figure(section=section, name=f"page of {size}: prometheus_client.parser",
                   value=f"{reference * 1000:.2f} ms",
                   target="-", met=None, command=COMMAND),
            Figure(section=section, name=f"page of {size}: ours, first parse (empty caches)",
                   value=f"{first * 1000:.2f} ms = {reference / first:.1f}x faster", target=">= 10x",
                   met=reference / first >= 10, command=COMMAND),
            Figure(section=section, name=f"page of {size}: ours, repeat scrape",
                   value=f"{repeat * 1000:.2f} ms = {reference / repeat:.1f}x faster", target=">= 10x",
                   met=reference / repeat >= 10, command=COMMAND),
        ]  # fmt: skip
    return figures


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value} (target {figure.target})")
