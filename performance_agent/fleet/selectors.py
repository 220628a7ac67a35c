"""Prometheus label matchers (`{namespace="llm",pod=~"vllm-.*"}`): parsed, checked and written back (pure).

An instance read through Prometheus is named by the matchers that select exactly its series, so
they are checked when the instance is registered (a typo is a 422 then, not a failed query every
scrape interval). The grammar is PromQL's label-matcher list as documented at
https://prometheus.io/docs/prometheus/latest/querying/basics/#instant-vector-selectors:
`name op "value"` separated by commas, `op` one of `=`, `!=`, `=~`, `!~`, values in double or
single quotes with Go escapes. A metric name is not part of it: the agent chooses the names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ("LabelMatcher", "SelectorError", "parse_selector", "quote_label_value", "render_selector")

MatchOp = Literal["=", "!=", "=~", "!~"]
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS: tuple[MatchOp, ...] = ("=~", "!~", "!=", "=")  # two-character operators first
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
#: At most this many matchers: a server is named by a few labels, not a query.
MAX_MATCHERS = 32


class SelectorError(ValueError):
    """The text is not a label-matcher list the agent accepts; the message says where and why."""


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    name: str
    op: MatchOp
    value: str


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\n":
        position += 1
    return position


def _read_string(text: str, position: int) -> tuple[str, int]:
    quote = text[position] if position < len(text) else ""
    if quote not in ('"', "'"):
        raise SelectorError(f"expected a quoted value at character {position + 1}")
    position += 1
    chars: list[str] = []
    while position < len(text):
        character = text[position]
        if character == quote:
            return "".join(chars), position + 1
        if character == "\\":
            escaped = text[position + 1 : position + 2]
            if escaped not in _ESCAPES:
                raise SelectorError(f"unknown escape \\{escaped} at character {position + 1}")
            chars.append(_ESCAPES[escaped])
            position += 2
            continue
        if character == "\n":
            raise SelectorError("a quoted value cannot span lines")
        chars.append(character)
        position += 1
    raise SelectorError("a quoted value is not closed")


def parse_selector(text: str) -> tuple[LabelMatcher, ...]:
    """The matchers of `{...}`; raises `SelectorError` for anything else.

    Refused besides syntax errors: no matcher at all, a `__name__` matcher (the agent picks the
    metric names), an invalid regular expression, and a selector whose every matcher matches
    the empty string (Prometheus refuses those: they would select every series).
    """
    position = _skip_space(text, 0)
    if text[position : position + 1] != "{":
        raise SelectorError('a selector starts with "{", e.g. {namespace="llm",pod="vllm-0"}')
    position += 1
    matchers: list[LabelMatcher] = []
    while True:
        position = _skip_space(text, position)
        if text[position : position + 1] == "}":
            position += 1
            break
        found = _LABEL_NAME.match(text, position)
        if found is None:
            raise SelectorError(f"expected a label name at character {position + 1}")
        name = found.group()
        position = _skip_space(text, found.end())
        op = next((candidate for candidate in _OPS if text.startswith(candidate, position)), None)
        if op is None:
            raise SelectorError(f"expected one of = != =~ !~ after {name} at character {position + 1}")
        value, position = _read_string(text, _skip_space(text, position + len(op)))
        if name == "__name__":
            raise SelectorError("__name__ cannot be matched: the agent chooses the metric names it reads")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as invalid:
                raise SelectorError(f"{name}{op}: not a valid regular expression ({invalid})") from None
        matchers.append(LabelMatcher(name, op, value))
        position = _skip_space(text, position)
        separator = text[position : position + 1]
        if separator == ",":
            position += 1
        elif separator != "}":
            raise SelectorError(f'expected "," or "}}" at character {position + 1}')
    if _skip_space(text, position) != len(text):
        raise SelectorError(f"unexpected text after the selector at character {position + 1}")
    if not matchers:
        raise SelectorError("at least one label matcher is needed to select one server's series")
    if len(matchers) > MAX_MATCHERS:
        raise SelectorError(f"at most {MAX_MATCHERS} label matchers")
    if all(_matches_empty(matcher) for matcher in matchers):
        raise SelectorError("at least one matcher must not match the empty string (it would select every series)")
    return tuple(matchers)


def _matches_empty(matcher: LabelMatcher) -> bool:
    if matcher.op == "=":
        return matcher.value == ""
    if matcher.op == "!=":
        return matcher.value != ""
    matched = re.fullmatch(matcher.value, "") is not None
    return matched if matcher.op == "=~" else not matched


def quote_label_value(value: str) -> str:
    """A PromQL double-quoted string literal of `value`."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_selector(matchers: tuple[LabelMatcher, ...], *, name_regex: str | None = None) -> str:
    """The selector as PromQL, optionally with a `__name__=~` matcher first."""
    parts = [] if name_regex is None else [f"__name__=~{quote_label_value(name_regex)}"]
    parts.extend(f"{matcher.name}{matcher.op}{quote_label_value(matcher.value)}" for matcher in matchers)
    return "{" + ",".join(parts) + "}"
