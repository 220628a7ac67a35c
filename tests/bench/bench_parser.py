"""Time our exposition parser against `prometheus_client.parser` on the same realistic vLLM page.

Run: `.venv/bin/python -m tests.bench.bench_parser`. Best-of-N wall time (`time.perf_counter`) is
reported, because the minimum is the figure least disturbed by other work on a shared machine.
The values of both parsers are checked identical before anything is timed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from performance_agent.metrics.exposition import parse_page
from tests.bench.oracle import our_samples, reference_samples
from tests.bench.pages import realistic_vllm_page

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("ParserBenchResult", "best_time", "main", "measure")


@dataclass(frozen=True, slots=True)
class ParserBenchResult:
    page_bytes: int
    page_lines: int
    samples: int
    ours_s: float
    reference_s: float

    @property
    def ratio(self) -> float:
        return self.reference_s / self.ours_s


def best_time(work: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` runs, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def _reference_parse(text: str) -> int:
    return sum(len(family.samples) for family in text_string_to_metric_families(text))


def measure(ranks: int = 8, repeats: int = 30) -> ParserBenchResult:
    """Check both parsers agree on the page, then time each; raises AssertionError if they disagree."""
    text = realistic_vllm_page(ranks)
    ours = our_samples(text)
    if ours != reference_samples(text):
        raise AssertionError("parse_page and prometheus_client.parser disagree on the benchmark page")
    return ParserBenchResult(
        page_bytes=len(text.encode("utf-8")),
        page_lines=text.count("\n"),
        samples=sum(ours.values()),
        ours_s=best_time(lambda: parse_page(text), repeats),
        reference_s=best_time(lambda: _reference_parse(text), max(3, repeats // 5)),
    )


def main() -> None:
    for ranks in (8, 2):
        result = measure(ranks)
        print(
            f"vLLM page, {ranks} engine ranks: {result.page_bytes / 1024:.0f} KiB, {result.page_lines} lines, "
            f"{result.samples} samples (values identical in both parsers)\n"
            f"  parse_page                 {result.ours_s * 1000:8.2f} ms (best of N)\n"
            f"  prometheus_client.parser   {result.reference_s * 1000:8.2f} ms (best of N)\n"
            f"  speed-up                   {result.ratio:8.1f}x",
            file=sys.stdout,
        )


if __name__ == "__main__":
    main()
