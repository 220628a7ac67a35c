"""The grammar of single exposition lines, for the cases the fast loop in `exposition` hands over.

Everything here runs once per distinct label set, per comment line, or on a line that is unusual
or wrong; the per-sample hot path lives in `performance_agent.metrics.exposition`. Errors name
the line, so a bad scrape can be found in the page that produced it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from performance_agent.readings.page import MetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = (
    "NO_LABELS",
    "SUFFIXES_BY_TYPE",
    "ExpositionError",
    "check_nothing_after_eof",
    "learn_name",
    "learn_plain_labels",
    "read_comment",
    "read_labels",
    "read_sample_slow",
    "read_value_and_timestamp",
)

_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HELP_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)
_LABEL_ESCAPES: Final = {"\\": "\\", '"': '"', "n": "\n"}

SUFFIXES_BY_TYPE: Final[dict[str, frozenset[str]]] = {
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

NO_LABELS: Final[dict[str, str]] = {}


class ExpositionError(ValueError):
    """A page that is not valid exposition text; `line_number` is 1-based, as an editor shows it."""

    def __init__(self, line_number: int, reason: str, line: str = "") -> None:
        shown = f" in {line[:120]!r}" if line else ""
        super().__init__(f"line {line_number}: {reason}{shown}")
        self.line_number = line_number
        self.reason = reason


def check_nothing_after_eof(rest: Iterable[str], eof_line_number: int) -> None:
    """`rest`: the lines after the `# EOF` line."""
    for offset, line in enumerate(rest, eof_line_number + 1):
        if line.strip():
            raise ExpositionError(offset, "content after # EOF", line)


def read_value_and_timestamp(rest: str, divisor: float, line_number: int, line: str) -> tuple[float, float | None]:
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


def learn_name(name: str, known_names: set[str]) -> bool:
    """Remember a metric name once it is proven valid; False sends the line down the slow path."""
    if _METRIC_NAME.fullmatch(name) is None:
        return False
    known_names.add(name)
    return True


def read_sample_slow(
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
            cached, close = read_labels(line, position + 1, line_number)
            label_cache[line[position + 1 : close]] = cached
        labels = cached
        rest = line[close + 1 :]
    else:
        if position == match.end() and position < end:
            raise ExpositionError(line_number, f"invalid character {line[position]!r} after metric name", line)
        labels = NO_LABELS
        rest = line[position:]
    known_names.add(name)
    return name, labels, rest


def learn_plain_labels(
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


def read_labels(line: str, position: int, line_number: int) -> tuple[dict[str, str], int]:
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


def read_comment(line: str, line_number: int, families: dict[str, MetricFamily], openmetrics: bool) -> str | None:
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
        if argument not in SUFFIXES_BY_TYPE:
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
