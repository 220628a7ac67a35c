"""Prometheus text (0.0.4) and OpenMetrics text parser, built for scraping hundreds of servers.

One pass over the lines, no regular expression on the hot path. The common sample line
(`name{labels} value`) costs a few `str.find` calls and one `float()`: label text is parsed once
per distinct raw text and then served from a cache, because a page repeats the same label sets
across families (every vLLM histogram repeats `engine="0",model_name="..."`). Anything unusual
(escapes, blanks inside the label set, exemplars, tabs, a `{` in an exemplar) falls back to a
slower, fully general path, so the fast path never has to be clever.

Values match `prometheus_client.parser` on every page it accepts; choices where the formats differ:

- Timestamps are stored in **seconds** since the epoch in both formats. Text 0.0.4 writes
  milliseconds, so they are divided by 1000 (as `prometheus_client.parser` does); OpenMetrics
  writes seconds, kept as given (as `prometheus_client.openmetrics.parser` does). The format is
  taken from the `openmetrics` argument (the scraper knows the Content-Type), else from a
  trailing `# EOF` line.
- Sample names are kept exactly as written on the wire. `prometheus_client.parser` appends
  `_total` to samples of a counter declared without it (TGI's `tgi_request_count`); we do not.
- Exemplars (`# {...} v [ts]` after the value) are skipped; `# UNIT` fills `MetricFamily.unit`.
- Labels of a sample are its own dict (copied from the cache), so callers may mutate them.
- Proven label sets and names are remembered across calls (bounded; see `_SHARED_CACHE_LIMIT`),
  because the scraper re-reads the same servers every few seconds. This never changes a result.
- Not supported (raise `ExpositionError`): UTF-8 quoted metric or label names (`{"my.metric"}`).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Final

from performance_agent.metrics.exposition_grammar import (
    NO_LABELS,
    SUFFIXES_BY_TYPE,
    ExpositionError,
    check_nothing_after_eof,
    learn_name,
    learn_plain_labels,
    read_comment,
    read_sample_slow,
    read_value_and_timestamp,
)
from performance_agent.metrics.page_limits import UNLIMITED, PageLimitError, PageLimits, count_label_values
from performance_agent.readings.page import MetricFamily, MetricsPage, Sample

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ("ExpositionError", "ParserCache", "parse_page")

_new_sample: Final = tuple.__new__


class ParserCache:
    """Label texts, label-name tokens and metric names already proven valid, kept across parses.

    Why: a scraper re-reads the same servers' pages every few seconds, and instances serving one
    model repeat each other's label sets. Each entry is a pure function of its key and is never
    handed out (samples get copies), so keeping them changes no result. The owner decides how
    long they live (the collection service keeps one per app); `parse_page` without one starts
    empty, as a fresh process would. `limit` keeps a server with high-cardinality labels from
    growing memory without bound: past it, everything is forgotten.
    """

    __slots__ = ("labels", "limit", "names", "tokens")

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self.labels: dict[str, dict[str, str]] = {}
        self.tokens: dict[str, str] = {}
        self.names: set[str] = set()

    def clear(self) -> None:
        self.labels.clear()
        self.tokens.clear()
        self.names.clear()


# name, `name{`, its length, the appends of the name's series and of its family's samples,
# ... and whether the caller's `keep` declined the family (its samples are skipped unparsed).
_Route = tuple[str, str, int, "Callable[[Sample], None]", "Callable[[Sample], None]", bool]


def parse_page(
    text: str,
    *,
    openmetrics: bool | None = None,
    keep: Callable[[str], bool] | None = None,
    limits: PageLimits = UNLIMITED,
    cache: ParserCache | None = None,
) -> MetricsPage:
    """Parse a whole page; `openmetrics=None` guesses the format from a trailing `# EOF`.

    A page cut between two lines parses (a histogram simply has fewer buckets), because partial
    scrapes and excerpts are real; anything that is not a well-formed line raises `ExpositionError`.

    `keep(family_name)` lets a caller that reads only some families (an engine adapter reads about
    a third of a vLLM page) skip the rest: their families are still declared in `page.families`
    (engine detection looks at names), but their samples are neither parsed nor stored, so a
    malformed value inside a skipped family goes unnoticed. Without `keep` everything is checked.
    `cache` carries what earlier parses learnt (see `ParserCache`).

    `limits` caps the families on the page, the samples kept, the distinct values of each label
    and their length; parsing stops at the first one too many with `PageLimitError` (see
    `page_limits`), before the page's bulk is ever held in memory.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if openmetrics is None:
        tail = text[-64:].rstrip()
        openmetrics = tail == "# EOF" or tail.endswith("\n# EOF")
    timestamp_divisor = 1.0 if openmetrics else 1000.0

    lines: Iterator[str] = _lines(text)
    if text[:1] in (" ", "\t") or "\n " in text or "\n\t" in text:
        lines = map(_strip_blanks, lines)

    page = MetricsPage()
    families = page.families
    series = page.series
    if cache is None:
        cache = ParserCache()
    elif len(cache.labels) > cache.limit or len(cache.names) > cache.limit:
        cache.clear()
    label_cache = cache.labels
    label_tokens = cache.tokens
    known_names = cache.names
    sample_type = Sample
    no_labels = NO_LABELS
    routes: dict[str, _Route] = {}

    # The previous sample's `name{`: a line starting with it skips the name checks entirely.
    last_name = ""
    last_prefix = "\n"  # no line contains a newline, so nothing matches before the first sample
    prefix_length = 1
    unused: list[Sample] = []  # replaced before the first sample: every name differs from ""
    append_to_series: Callable[[Sample], None] = unused.append
    append_to_family: Callable[[Sample], None] = append_to_series
    skipping = False  # whether the previous sample's family is one `keep` declined
    max_families = limits.max_families
    series_left = limits.max_series
    # Label sets are cached (one dict per distinct label text), so a label set is new to this page
    # when its dict is: only then are its values counted against the per-label caps.
    page_label_sets: set[int] = set()
    values_by_label: dict[str, set[str]] = {}
    last_labels: dict[str, str] = no_labels

    for line_number, line in enumerate(lines, 1):  # `lines` stays an iterator: the EOF check reads on
        if line.startswith(last_prefix):
            if skipping:
                continue
            name = last_name
            head, _, rest = line.partition("}")
            label_text = head[prefix_length:]
            labels = label_cache.get(label_text)
            if labels is None and (labels := learn_plain_labels(label_text, label_cache, label_tokens)) is None:
                name, labels, rest = read_sample_slow(line, line_number, label_cache, known_names)
        elif not line:
            continue
        elif line[0] == "#":
            declared = read_comment(line, line_number, families, openmetrics)
            if declared is None:
                check_nothing_after_eof(lines, line_number)
                break
            if len(families) > max_families:
                raise _too_many_families(max_families)
            routes.pop(declared, None)
            last_name = ""
            last_prefix = "\n"
            continue
        else:
            brace = line.find("{")
            if keep is not None:
                name = line[:brace] if brace > 0 else line.partition(" ")[0]
                # Learnt first if new, so a declined family is skipped whatever earlier parses saw.
                if name != last_name and (name in known_names or learn_name(name, known_names)):
                    route = routes.get(name)
                    if route is None:
                        route = routes[name] = _route_for(name, series, families, keep)
                        if len(families) > max_families:
                            raise _too_many_families(max_families)
                    last_name, last_prefix, prefix_length, append_to_series, append_to_family, skipping = route
                if skipping and name == last_name:
                    continue
            if brace > 0:
                name = line[:brace]
                head, _, rest = line.partition("}")
                label_text = head[brace + 1 :]
                labels = label_cache.get(label_text)
                if labels is None:
                    labels = learn_plain_labels(label_text, label_cache, label_tokens)
                if labels is None or (name not in known_names and not learn_name(name, known_names)):
                    name, labels, rest = read_sample_slow(line, line_number, label_cache, known_names)
            else:
                name, _, rest = line.partition(" ")
                labels = no_labels
                if name not in known_names and not learn_name(name, known_names):
                    name, labels, rest = read_sample_slow(line, line_number, label_cache, known_names)

        try:
            value = float(rest)
        except ValueError:
            name, labels, rest = read_sample_slow(line, line_number, label_cache, known_names)
            value, timestamp = read_value_and_timestamp(rest, timestamp_divisor, line_number, line)
        else:
            if "_" in rest:
                raise ExpositionError(line_number, f"invalid value {rest.strip()!r}", line)
            timestamp = None

        if name != last_name:
            route = routes.get(name)
            if route is None:
                route = routes[name] = _route_for(name, series, families, keep)
                if len(families) > max_families:
                    raise _too_many_families(max_families)
            last_name, last_prefix, prefix_length, append_to_series, append_to_family, skipping = route
            if skipping:
                continue
        series_left -= 1
        if series_left < 0:
            raise PageLimitError("PERF_AGENT_SCRAPE_MAX_SERIES", limits.max_series, "more series")
        if labels is not last_labels:
            last_labels = labels
            if id(labels) not in page_label_sets:
                page_label_sets.add(id(labels))
                count_label_values(labels, values_by_label, limits)
        sample = _new_sample(sample_type, (name, labels.copy(), value, timestamp))
        append_to_series(sample)
        append_to_family(sample)

    return page


#: Lines are split this many characters at a time: a page of a million short lines never
#: exists as a million strings at once (about 60 MB), and a refused page is dropped early.
_BLOCK_CHARS = 1 << 20


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` exactly as `text.split("\n")`, split block by block."""
    if len(text) <= _BLOCK_CHARS:
        return iter(text.split("\n"))
    return itertools.chain.from_iterable(block.split("\n") for block in _blocks(text))


def _blocks(text: str) -> Iterator[str]:
    start = 0
    while True:
        end = text.find("\n", start + _BLOCK_CHARS)
        if end == -1:
            yield text[start:]
            return
        yield text[start:end]
        start = end + 1


def _strip_blanks(line: str) -> str:
    return line.strip(" \t")


def _too_many_families(limit: int) -> PageLimitError:
    return PageLimitError("PERF_AGENT_SCRAPE_MAX_FAMILIES", limit, "more metric families")


def _route_for(
    name: str,
    series: dict[str, list[Sample]],
    families: dict[str, MetricFamily],
    keep: Callable[[str], bool] | None,
) -> _Route:
    """Everything the loop needs when the sample name changes, computed once per name."""
    family = _family_for(name, families)
    prefix = name + "{"
    if keep is not None and not keep(family.name):
        return name, prefix, len(prefix), _discard, _discard, True
    found = series.get(name)
    if found is None:
        found = series[name] = []
    return name, prefix, len(prefix), found.append, family.samples.append, False


def _discard(sample: Sample) -> None:
    """Where samples of a family the caller declined would go (the loop skips them before this)."""


def _family_for(name: str, families: dict[str, MetricFamily]) -> MetricFamily:
    """The declared family a sample belongs to: its own name, or its name less a suffix the type allows."""
    family = families.get(name)
    if family is not None:
        return family
    base, _, suffix = name.rpartition("_")
    family = families.get(base)
    if family is not None and suffix in SUFFIXES_BY_TYPE[family.type]:
        return family
    family = families[name] = MetricFamily(name, "untyped")
    return family
