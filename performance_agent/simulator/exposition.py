"""Hand-written Prometheus text in the exact styles of the libraries the real engines use.

The simulator must not render through `prometheus_client`: tests use that library as the
oracle that parses our pages, and a renderer and its oracle sharing code would agree on
mistakes. Three styles are reproduced, from reading each library's source:

* `PythonClientPage` — `prometheus_client.generate_latest` in a single process (vLLM): labels
  sorted by name (`le` included), counters written `<name>_total`, a `<name>_created` gauge
  family after each counter/histogram, bucket/count/sum order, Go-style float formatting.
* `MultiprocessPage` — the same library through `MultiProcessCollector` (SGLang, which always
  runs with `PROMETHEUS_MULTIPROC_DIR`): `_sum` first, then buckets, then `_count`, and no
  `_created` series at all (the collector never writes them; the real SGLang sample agrees).
* `RustExporterPage` — `metrics-exporter-prometheus` 0.15 (TGI): counters without `_total`
  and as integers, Rust `f64` Display for floats (never an exponent), labels in insertion
  order, a blank line after each family, histograms without `_created`, summaries with
  quantiles 0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from performance_agent.simulator.shape import LatencyShaper, PendingTokens

__all__ = (
    "Histogram",
    "MultiprocessPage",
    "PythonClientPage",
    "RustExporterPage",
    "Summary",
    "edges",
    "go_float",
    "rust_float",
)

Labels = tuple[tuple[str, str], ...]


def edges(text: str) -> tuple[float, ...]:
    """Bucket edges written as the engines' sources list them: space-separated numbers."""
    return tuple(float(part) for part in text.split())


def go_float(value: float) -> str:
    """`prometheus_client.utils.floatToGoString`: Python repr, switching to an exponent as Go does."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def rust_float(value: float) -> str:
    """Rust's `f64` Display: shortest round-trip digits, always positional, `1` rather than `1.0`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


@functools.lru_cache(maxsize=256)
def _go_edges(edges: tuple[float, ...]) -> tuple[str, ...]:
    return (*(go_float(edge) for edge in edges), "+Inf")


@functools.lru_cache(maxsize=256)
def _rust_edges(edges: tuple[float, ...]) -> tuple[str, ...]:
    return tuple(rust_float(edge) for edge in edges)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


@dataclass(slots=True)
class Histogram:
    """Cumulative-on-render histogram that also takes fractional observation counts.

    The load model advances in fluid segments, so "n_decode * steps" observations of one step
    time are usually not an integer; the fractional remainder is carried to the next call so
    every rendered count stays a whole number, as a real client's would.
    """

    edges: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0
    carry: float = 0.0
    pending: PendingTokens | None = None  # shaped token observations not drawn yet

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.edges) + 1)

    def observe(self, value: float, times: int = 1) -> None:
        if times <= 0:
            return
        self.counts[bisect.bisect_left(self.edges, value)] += times
        self.total += value * times
        self.count += times

    def observe_weighted(self, value: float, weight: float, shaper: LatencyShaper | None = None) -> None:
        """`weight` observations of `value`; with a `shaper`, each one times its own latency multiplier."""
        if shaper is not None and not shaper.is_identity:
            shaper.add_tokens(self, value, weight)  # drawn into the buckets at the end of the tick
            return
        if self.pending is not None and shaper is not None:  # the shape was just turned off
            self.add_drawn(shaper.draw(self.pending))
            self.carry, self.pending = self.carry + self.pending.total, None
        self.carry += weight
        whole = int(self.carry + 1e-9)  # 10 * 0.35 must count as 3.5, not 3.4999...
        if whole > 0:
            self.carry -= whole
            self.observe(value, whole)

    def add_drawn(self, drawn: tuple[list[tuple[int, int]], int, float] | None) -> None:
        if drawn is not None:
            buckets, count, total = drawn
            for index, bucket_count in buckets:
                self.counts[index] += bucket_count
            self.count += count
            self.total += total

    def cumulative(self) -> list[int]:
        running, out = 0, []
        for bucket in self.counts:
            running += bucket
            out.append(running)
        return out


@dataclass(slots=True)
class Summary:
    """Sum and count over the lifetime, quantiles over the most recent observations."""

    window: deque[float] = field(default_factory=lambda: deque(maxlen=1024))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float, times: int = 1) -> None:
        for _ in range(min(times, 1024)):
            self.window.append(value)
        self.total += value * times
        self.count += times

    def quantile(self, q: float) -> float:
        if not self.window:
            return 0.0
        ordered = sorted(self.window)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(slots=True)
class _Family:
    kind: str
    help: str
    lines: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


class _PythonStylePage:
    """Shared by both prometheus_client styles: families in first-seen order, sorted labels."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _family(self, name: str, kind: str, help_text: str) -> _Family:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(kind, help_text)
        return family

    @staticmethod
    def _line(name: str, labels: dict[str, str], value: float) -> str:
        if not labels:
            return f"{name} {go_float(value)}\n"
        body = ",".join(f'{key}="{_escape(labels[key])}"' for key in sorted(labels))
        return f"{name}{{{body}}} {go_float(value)}\n"

    def gauge(self, name: str, help_text: str, labels: dict[str, str], value: float) -> None:
        self._family(name, "gauge", help_text).lines.append(self._line(name, labels, value))

    @staticmethod
    def _bucket_lines(name: str, labels: dict[str, str], hist: Histogram) -> list[str]:
        """Bucket lines with `le` sorted in among the labels, formatting the label text once."""
        before = "".join(f'{k}="{_escape(labels[k])}",' for k in sorted(labels) if k < "le")
        after = "".join(f',{k}="{_escape(labels[k])}"' for k in sorted(labels) if k > "le")
        prefix = f'{name}_bucket{{{before}le="'
        return [
            f'{prefix}{edge}"{after}}} {go_float(count)}\n'
            for edge, count in zip(_go_edges(hist.edges), hist.cumulative(), strict=True)
        ]

    def render(self, with_created: bool) -> str:
        out: list[str] = []
        for name, family in self._families.items():
            wire = name + "_total" if family.kind == "counter" else name
            out.append(f"# HELP {wire} {_help_escape(family.help)}\n# TYPE {wire} {family.kind}\n")
            out.extend(family.lines)
            if with_created and family.created:
                out.append(f"# HELP {name}_created {_help_escape(family.help)}\n# TYPE {name}_created gauge\n")
                out.extend(family.created)
        return "".join(out)


class PythonClientPage(_PythonStylePage):
    """A single-process `prometheus_client` registry (vLLM's default, one API server)."""

    def counter(self, name: str, help_text: str, labels: dict[str, str], value: float, created: float | None) -> None:
        """`created=None` for collector-made counters (process_*), which carry no `_created`."""
        family = self._family(name, "counter", help_text)
        family.lines.append(self._line(name + "_total", labels, value))
        if created is not None:
            family.created.append(self._line(name + "_created", labels, created))

    def histogram(self, name: str, help_text: str, labels: dict[str, str], hist: Histogram, created: float) -> None:
        family = self._family(name, "histogram", help_text)
        family.lines.extend(self._bucket_lines(name, labels, hist))
        family.lines.append(self._line(name + "_count", labels, hist.count))
        family.lines.append(self._line(name + "_sum", labels, hist.total))
        family.created.append(self._line(name + "_created", labels, created))

    def text(self) -> str:
        return self.render(with_created=True)


class MultiprocessPage(_PythonStylePage):
    """`prometheus_client` through `MultiProcessCollector` (SGLang): no `_created`, `_sum` first."""

    def counter(self, name: str, help_text: str, labels: dict[str, str], value: float) -> None:
        self._family(name, "counter", help_text).lines.append(self._line(name + "_total", labels, value))

    def histogram(self, name: str, help_text: str, labels: dict[str, str], hist: Histogram) -> None:
        family = self._family(name, "histogram", help_text)
        family.lines.append(self._line(name + "_sum", labels, hist.total))
        family.lines.extend(self._bucket_lines(name, labels, hist))
        family.lines.append(self._line(name + "_count", labels, hist.count))

    def text(self) -> str:
        return self.render(with_created=False)


class RustExporterPage:
    """`metrics-exporter-prometheus` 0.15 as TGI links it: counters, then gauges, then distributions."""

    def __init__(self, descriptions: dict[str, str]) -> None:
        self._descriptions = descriptions
        self._sections: dict[str, dict[str, list[str]]] = {"counter": {}, "gauge": {}, "dist": {}}
        self._dist_kind: dict[str, str] = {}

    @staticmethod
    def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
        parts = [f'{key}="{_escape(value)}"' for key, value in labels]
        if extra is not None:
            parts.append(f'{extra[0]}="{extra[1]}"')
        return "{" + ",".join(parts) + "}" if parts else ""

    def counter(self, name: str, labels: Labels, value: int) -> None:
        self._sections["counter"].setdefault(name, []).append(f"{name}{self._labels(labels)} {int(value)}\n")

    def gauge(self, name: str, labels: Labels, value: float) -> None:
        self._sections["gauge"].setdefault(name, []).append(f"{name}{self._labels(labels)} {rust_float(value)}\n")

    def histogram(self, name: str, labels: Labels, hist: Histogram) -> None:
        self._dist_kind[name] = "histogram"
        lines = self._sections["dist"].setdefault(name, [])
        inner = "".join(f'{key}="{_escape(value)}",' for key, value in labels)
        prefix = f'{name}_bucket{{{inner}le="'
        lines.extend(
            f'{prefix}{edge}"}} {cumulative}\n'
            for edge, cumulative in zip(_rust_edges(hist.edges), hist.cumulative(), strict=False)
        )
        lines.append(f"{name}_bucket{self._labels(labels, ('le', '+Inf'))} {hist.count}\n")
        lines.append(f"{name}_sum{self._labels(labels)} {rust_float(hist.total)}\n")
        lines.append(f"{name}_count{self._labels(labels)} {hist.count}\n")

    def summary(self, name: str, labels: Labels, summary: Summary) -> None:
        self._dist_kind[name] = "summary"
        lines = self._sections["dist"].setdefault(name, [])
        for q in (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
            quantile = rust_float(q)
            lines.append(f"{name}{self._labels(labels, ('quantile', quantile))} {rust_float(summary.quantile(q))}\n")
        lines.append(f"{name}_sum{self._labels(labels)} {rust_float(summary.total)}\n")
        lines.append(f"{name}_count{self._labels(labels)} {summary.count}\n")

    def text(self) -> str:
        out: list[str] = []
        for section, families in self._sections.items():
            for name, lines in families.items():
                if name in self._descriptions:
                    out.append(f"# HELP {name} {_help_escape(self._descriptions[name])}\n")
                kind = self._dist_kind[name] if section == "dist" else section
                out.append(f"# TYPE {name} {kind}\n")
                out.extend(lines)
                out.append("\n")
        return "".join(out)
