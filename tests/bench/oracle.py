"""Compare our parser with `prometheus_client`'s parsers, sample by sample.

Both sides are reduced to a multiset of `(wire name, sorted labels, value, timestamp)`; NaN is
replaced by a marker because NaN never equals itself. The one deliberate difference is undone
here, in the open: `prometheus_client.parser` renames the samples of a counter declared without
`_total` (`# TYPE tgi_request_count counter`) to `<name>_total`, while we keep the wire name.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING

from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as text_families

from performance_agent.metrics.exposition import parse_page

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from prometheus_client.metrics_core import Metric

__all__ = ("SampleKey", "our_samples", "reference_openmetrics_samples", "reference_samples")

SampleKey = tuple[str, tuple[tuple[str, str], ...], float | str, float | None]

# The OpenMetrics parser has no annotations; this states the one signature used here.
openmetrics_families: Callable[[str], Iterable[Metric]] = openmetrics_parser.text_string_to_metric_families

_COUNTER_DECLARATION = re.compile(r"^#[ \t]+TYPE[ \t]+(\S+)[ \t]+counter[ \t]*\r?$", re.MULTILINE)


def _key(name: str, labels: dict[str, str], value: float, timestamp: float | None) -> SampleKey:
    shown_value: float | str = "NaN" if math.isnan(value) else float(value)
    # OpenMetrics' Timestamp(sec, nsec) sums two floats; a microsecond is far finer than any exporter writes.
    shown_timestamp = None if timestamp is None else round(timestamp, 6)
    return name, tuple(sorted(labels.items())), shown_value, shown_timestamp


def reference_samples(text: str) -> Counter[SampleKey]:
    """Samples as `prometheus_client.parser` (text format 0.0.4) reads them, under their wire names."""
    declared_without_total = set(_COUNTER_DECLARATION.findall(text))
    samples: Counter[SampleKey] = Counter()
    for family in text_families(text):
        renamed = family.type == "counter" and family.name in declared_without_total
        for sample in family.samples:
            name = sample.name.removesuffix("_total") if renamed else sample.name
            timestamp = None if sample.timestamp is None else float(sample.timestamp)
            samples[_key(name, sample.labels, sample.value, timestamp)] += 1
    return samples


def reference_openmetrics_samples(text: str) -> Counter[SampleKey]:
    """Samples as `prometheus_client.openmetrics.parser` reads them (names are already wire names)."""
    samples: Counter[SampleKey] = Counter()
    for family in openmetrics_families(text):
        for sample in family.samples:
            timestamp = None if sample.timestamp is None else float(sample.timestamp)
            samples[_key(sample.name, sample.labels, sample.value, timestamp)] += 1
    return samples


def our_samples(text: str, *, openmetrics: bool | None = None) -> Counter[SampleKey]:
    samples: Counter[SampleKey] = Counter()
    for series in parse_page(text, openmetrics=openmetrics).series.values():
        for sample in series:
            samples[_key(sample.name, sample.labels, sample.value, sample.timestamp)] += 1
    return samples
