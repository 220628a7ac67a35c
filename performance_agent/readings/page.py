"""The parsed form of one `/metrics` page, shared by the parser and the engine adapters.

Kept apart from the parser so that adapters (and a future Prometheus-query source) depend on
the shape of the data, not on how it was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ("MetricFamily", "MetricsPage", "Sample")


class Sample(NamedTuple):
    """One line of a page: the full sample name (with `_bucket`, `_total`... suffixes) as written."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None


@dataclass(slots=True)
class MetricFamily:
    """A family as declared by `# TYPE` (or implied by an untyped sample)."""

    name: str
    type: str  # counter | gauge | histogram | summary | untyped | info | stateset | gaugehistogram | unknown
    help: str = ""
    unit: str = ""
    samples: list[Sample] = field(default_factory=list)


@dataclass(slots=True)
class MetricsPage:
    """Every family on the page, plus an index of samples by their exact wire name.

    `series` is what adapters read (`page.series.get("vllm:num_requests_running", [])`); `families`
    keeps the declared types and help texts.
    """

    families: dict[str, MetricFamily] = field(default_factory=dict)
    series: dict[str, list[Sample]] = field(default_factory=dict)
