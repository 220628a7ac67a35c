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

import re
from typing import TYPE_CHECKING, Final

from performance_agent.metrics.page import MetricFamily, MetricsPage, Sample

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("ExpositionError", "clear_parser_caches", "parse_page")

_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HELP_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)
_LABEL_ESCAPES: Final = {"\\": "\\", '"': '"', "n": "\n"}

_SUFFIXES_BY_TYPE: Final[dict[str, frozenset[str]]] = {
    "counter": frozenset(("total", "created")),
    "histogram": frozenset(("bucket", "sum", "count", "created")),
    "summary": frozenset(("sum", "count", "created")),
    "gaugehistogram": frozenset(("bucket", "gsum", "gcount")),
    "info": frozenset(("info",)),
    "gauge": frozenset(),
    "stateset": frozenset(),
    "untyped": frozenset(),
    "unknown": frozenset(),
}

_new_sample: Final = tuple.__new__
_NO_LABELS: Final[dict[str, str]] = {}

# Label texts, label-name tokens and metric names already proven valid, shared by every parse:
# a scraper re-reads the same servers' pages every few seconds, and instances serving one model
# repeat each other's label sets. Each entry is a pure function of its key and is never handed
# out (samples get copies), so sharing changes no result. The bound keeps a server with
# high-cardinality labels from growing memory without limit: past it, everything is forgotten.
_SHARED_CACHE_LIMIT: Final = 50_000
_label_cache: Final[dict[str, dict[str, str]]] = {}
_label_tokens: Final[dict[str, str]] = {}
_known_names: Final[set[str]] = set()

# name, `name{`, its length, and the appends of the name's series and of its family's samples.
_Route = tuple[str, str, int, "Callable[[Sample], None]", "Callable[[Sample], None]"]


class ExpositionError(ValueError):
    """A page that is not valid exposition text; `line_number` is 1-based, as an editor shows it."""

    def __init__(self, line_number: int, reason: str, line: str = "") -> None:
        shown = f" in {line[:120]!r}" if line else ""
        super().__init__(f"line {line_number}: {reason}{shown}")
        self.line_number = line_number
        self.reason = reason


def clear_parser_caches() -> None:
    """Forget every remembered label set and name, as in a fresh process (benchmarks of a first parse use it)."""
    _label_cache.clear()
    _label_tokens.clear()
    _known_names.clear()


def parse_page(text: str, *, openmetrics: bool | None = None) -> MetricsPage:
    """Parse a whole page; `openmetrics=None` guesses the format from a trailing `# EOF`.

    A page cut between two lines parses (a histogram simply has fewer buckets), because partial
    scrapes and excerpts are real; anything that is not a well-formed line raises `ExpositionError`.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if openmetrics is None:
        tail = text[-64:].rstrip()
        openmetrics = tail == "# EOF" or tail.endswith("\n# EOF")
    timestamp_divisor = 1.0 if openmetrics else 1000.0

    lines = text.split("\n")
    if text[:1] in (" ", "\t") or "\n " in text or "\n\t" in text:
        lines = [line.strip(" \t") for line in lines]

    page = MetricsPage()
    families = page.families
    series = page.series
    if len(_label_cache) > _SHARED_CACHE_LIMIT or len(_known_names) > _SHARED_CACHE_LIMIT:
        clear_parser_caches()
    label_cache = _label_cache
    label_tokens = _label_tokens
    known_names = _known_names
    sample_type = Sample
    no_labels = _NO_LABELS
    routes: dict[str, _Route] = {}

    # The previous sample's `name{`: a line starting with it skips the name checks entirely.
    last_name = ""
    last_prefix = "\n"  # no line contains a newline, so nothing matches before the first sample
    prefix_length = 1
    unused: list[Sample] = []  # replaced before the first sample: every name differs from ""
    append_to_series: Callable[[Sample], None] = unused.append
    append_to_family: Callable[[Sample], None] = append_to_series

    for line_number, line in enumerate(lines, 1):
        if line.startswith(last_prefix):
            name = last_name
            head, _, rest = line.partition("}")
            label_text = head[prefix_length:]
            labels = label_cache.get(label_text)
            if labels is None and (labels := _learn_plain_labels(label_text, label_cache, label_tokens)) is None:
                name, labels, rest = _read_sample_slow(line, line_number, label_cache, known_names)
        elif not line:
            continue
        elif line[0] == "#":
            declared = _read_comment(line, line_number, families, openmetrics)
            if declared is None:
                _check_nothing_after_eof(lines, line_number)
                break
            routes.pop(declared, None)
            last_name = ""
            last_prefix = "\n"
            continue
        else:
            brace = line.find("{")
            if brace > 0:
                name = line[:brace]
                head, _, rest = line.partition("}")
                label_text = head[brace + 1 :]
                labels = label_cache.get(label_text)
                if labels is None:
                    labels = _learn_plain_labels(label_text, label_cache, label_tokens)
                if labels is None or (name not in known_names and not _learn_name(name, known_names)):
                    name, labels, rest = _read_sample_slow(line, line_number, label_cache, known_names)
            else:
                name, _, rest = line.partition(" ")
                labels = no_labels
                if name not in known_names and not _learn_name(name, known_names):
                    name, labels, rest = _read_sample_slow(line, line_number, label_cache, known_names)

        try:
            value = float(rest)
        except ValueError:
            name, labels, rest = _read_sample_slow(line, line_number, label_cache, known_names)
            value, timestamp = _read_value_and_timestamp(rest, timestamp_divisor, line_number, line)
        else:
            if "_" in rest:
                raise ExpositionError(line_number, f"invalid value {rest.strip()!r}", line)
            timestamp = None

        if name != last_name:
            route = routes.get(name)
            if route is None:
                route = routes[name] = _route_for(name, series, families)
            last_name, last_prefix, prefix_length, append_to_series, append_to_family = route
        sample = _new_sample(sample_type, (name, labels.copy(), value, timestamp))
        append_to_series(sample)
        append_to_family(sample)

    return page


def _check_nothing_after_eof(lines: list[str], eof_line_number: int) -> None:
    for offset, line in enumerate(lines[eof_line_number:], eof_line_number + 1):
        if line.strip():
            raise ExpositionError(offset, "content after # EOF", line)


def _read_value_and_timestamp(rest: str, divisor: float, line_number: int, line: str) -> tuple[float, float | None]:
    """The general form of what follows the labels: `value [timestamp] [# exemplar]`."""
    tokens = rest.split()
    if not tokens or tokens[0] == "#":
        raise ExpositionError(line_number, "missing value", line)
    value_text = tokens[0]
    try:
        value = float(value_text)
    except ValueError:
        raise ExpositionError(line_number, f"invalid value {value_text!r}", line) from None
    if "_" in value_text:
        raise ExpositionError(line_number, f"invalid value {value_text!r}", line)
    if len(tokens) == 1 or tokens[1] == "#":
        return value, None
    if len(tokens) > 2 and tokens[2] != "#":
        raise ExpositionError(line_number, f"unexpected text after timestamp: {tokens[2]!r}", line)
    return value, _read_timestamp(tokens[1], divisor, line_number, line)


def _read_timestamp(token: str, divisor: float, line_number: int, line: str) -> float:
    try:
        stamp = float(token)
    except ValueError:
        raise ExpositionError(line_number, f"invalid timestamp {token!r}", line) from None
    if "_" in token or stamp != stamp or stamp in (float("inf"), float("-inf")):
        raise ExpositionError(line_number, f"invalid timestamp {token!r}", line)
    return stamp / divisor


def _route_for(name: str, series: dict[str, list[Sample]], families: dict[str, MetricFamily]) -> _Route:
    """Everything the loop needs when the sample name changes, computed once per name."""
    found = series.get(name)
    if found is None:
        found = series[name] = []
    prefix = name + "{"
    return name, prefix, len(prefix), found.append, _family_for(name, families).samples.append


def _family_for(name: str, families: dict[str, MetricFamily]) -> MetricFamily:
    """The declared family a sample belongs to: its own name, or its name less a suffix the type allows."""
    family = families.get(name)
    if family is not None:
        return family
    base, _, suffix = name.rpartition("_")
    family = families.get(base)
    if family is not None and suffix in _SUFFIXES_BY_TYPE[family.type]:
        return family
    family = families[name] = MetricFamily(name, "untyped")
    return family


def _learn_name(name: str, known_names: set[str]) -> bool:
    """Remember a metric name once it is proven valid; False sends the line down the slow path."""
    if _METRIC_NAME.fullmatch(name) is None:
        return False
    known_names.add(name)
    return True


def _read_sample_slow(
    line: str, line_number: int, label_cache: dict[str, dict[str, str]], known_names: set[str]
) -> tuple[str, dict[str, str], str]:
    """Split any sample line into name, labels and the text after them; teaches the caches."""
    match = _METRIC_NAME.match(line)
    if match is None:
        raise ExpositionError(line_number, "invalid metric name", line)
    name = match.group()
    position = match.end()
    end = len(line)
    while position < end and line[position] in " \t":
        position += 1
    if position < end and line[position] == "{":
        close = line.find("}", position)
        cached = label_cache.get(line[position + 1 : close]) if close > 0 else None
        if cached is None:
            cached, close = _read_labels(line, position + 1, line_number)
            label_cache[line[position + 1 : close]] = cached
        labels = cached
        rest = line[close + 1 :]
    else:
        if position == match.end() and position < end:
            raise ExpositionError(line_number, f"invalid character {line[position]!r} after metric name", line)
        labels = _NO_LABELS
        rest = line[position:]
    known_names.add(name)
    return name, labels, rest


def _learn_plain_labels(
    label_text: str, label_cache: dict[str, dict[str, str]], label_tokens: dict[str, str]
) -> dict[str, str] | None:
    """On a cache miss, read a plainly written set (`a="x",b="y"`) and remember it.

    Without a backslash no value can hold a quote, so splitting on `"` alternates between
    `,name=` tokens and values; the token cache maps `,engine=` to `engine` once. Anything
    irregular (blanks, escapes, a `}` inside a value that cut the text short) returns None and
    the line takes the general path.
    """
    if "\\" in label_text:
        return None
    parts = label_text.split('"')
    count = len(parts)
    if count % 2 == 0 or count == 1:
        return None
    trailer = parts[-1]
    if trailer and trailer != ",":
        return None
    labels: dict[str, str] = {}
    for index in range(0, count - 1, 2):
        token = parts[index]
        label_name = label_tokens.get(token)
        if label_name is None:
            label_name = token[1:-1] if token[:1] == "," else token[:-1]
            if token[-1:] != "=" or _LABEL_NAME.fullmatch(label_name) is None:
                return None
            label_tokens[token] = label_name
        if (token[0] == ",") != (index > 0) or label_name in labels:
            return None
        labels[label_name] = parts[index + 1]
    label_cache[label_text] = labels
    return labels


def _read_labels(line: str, position: int, line_number: int) -> tuple[dict[str, str], int]:
    """Parse `name="value",...}` starting after `{`; returns the labels and the index of the closing `}`."""
    labels: dict[str, str] = {}
    end = len(line)
    while True:
        while position < end and line[position] in " \t":
            position += 1
        if position >= end:
            raise ExpositionError(line_number, "unterminated label set", line)
        if line[position] == "}":
            return labels, position
        equals = line.find("=", position)
        if equals == -1:
            raise ExpositionError(line_number, "label without '='", line)
        label_name = line[position:equals].strip(" \t")
        if _LABEL_NAME.fullmatch(label_name) is None:
            raise ExpositionError(line_number, f"invalid label name {label_name!r}", line)
        position = equals + 1
        while position < end and line[position] in " \t":
            position += 1
        if position >= end or line[position] != '"':
            raise ExpositionError(line_number, f"value of label {label_name!r} is not quoted", line)
        label_value, position = _read_quoted(line, position + 1, line_number)
        if label_name in labels:
            raise ExpositionError(line_number, f"duplicate label {label_name!r}", line)
        labels[label_name] = label_value
        while position < end and line[position] in " \t":
            position += 1
        if position >= end:
            raise ExpositionError(line_number, "unterminated label set", line)
        separator = line[position]
        if separator == ",":
            position += 1
        elif separator != "}":
            raise ExpositionError(line_number, f"expected ',' or '}}' after label {label_name!r}", line)


def _read_quoted(line: str, position: int, line_number: int) -> tuple[str, int]:
    """Read a label value from just after its opening quote; returns it unescaped and the index past the quote."""
    chunks: list[str] = []
    while True:
        quote = line.find('"', position)
        if quote == -1:
            raise ExpositionError(line_number, "unterminated label value", line)
        backslash = line.find("\\", position, quote)
        if backslash == -1:
            chunks.append(line[position:quote])
            return "".join(chunks), quote + 1
        chunks.append(line[position:backslash])
        escaped = line[backslash + 1 : backslash + 2]
        replacement = _LABEL_ESCAPES.get(escaped)
        if replacement is None:
            raise ExpositionError(line_number, f"invalid escape sequence '\\{escaped}' in label value", line)
        chunks.append(replacement)
        position = backslash + 2


def _unescape_help(text: str, openmetrics: bool) -> str:
    """HELP knows `\\\\` and `\\n` (and `\\"` in OpenMetrics); other backslashes stay literal.

    Both reference parsers keep unknown HELP escapes as written rather than failing the page.
    """

    def replace(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped == "n":
            return "\n"
        if escaped == "\\" or (escaped == '"' and openmetrics):
            return escaped
        return match.group()

    return _HELP_ESCAPE.sub(replace, text)


def _read_comment(line: str, line_number: int, families: dict[str, MetricFamily], openmetrics: bool) -> str | None:
    """Apply a `#` line: HELP, TYPE, UNIT, EOF or a plain comment.

    Returns None for `# EOF`, else the family name the line declared ("" for a plain comment),
    so that the caller can forget where it routed samples of that name before.
    """
    parts = line[1:].split(None, 2)
    if not parts:
        return ""
    keyword = parts[0]
    if keyword == "EOF" and len(parts) == 1:
        return None
    if keyword not in ("HELP", "TYPE", "UNIT"):
        return ""
    if len(parts) < 2:
        raise ExpositionError(line_number, f"# {keyword} without a metric name", line)
    name = parts[1]
    if _METRIC_NAME.fullmatch(name) is None:
        raise ExpositionError(line_number, f"invalid metric name {name!r} in # {keyword}", line)
    argument = parts[2].rstrip() if len(parts) == 3 else ""
    family = families.get(name)
    if keyword == "TYPE":
        if argument not in _SUFFIXES_BY_TYPE:
            raise ExpositionError(line_number, f"unknown metric type {argument!r}", line)
        if family is None:
            families[name] = MetricFamily(name, argument)
        elif family.type == "untyped":
            family.type = argument
        elif family.type != argument:
            raise ExpositionError(line_number, f"{name} declared {argument} after {family.type}", line)
        return name
    if family is None:
        family = families[name] = MetricFamily(name, "untyped")
    if keyword == "HELP":
        family.help = _unescape_help(argument, openmetrics) if "\\" in argument else argument
    else:
        family.unit = argument
    return name
