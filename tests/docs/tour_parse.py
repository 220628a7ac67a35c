"""Reading the executable examples of docs/api.md: fenced shell blocks a reader can paste and a test can run.

The guide is written in plain shell (curl, and jq for the values a later step needs), because that
is what a reader types. Only a small, fixed set of command shapes is allowed, so a test can run
each one exactly as the shell would, without a shell:

    curl ...                                                         one request
    NAME=$(curl ... | jq -r '.path[0].to')                           keep a value of the JSON answer
    NAME=$(curl -s -D - -o /dev/null ... | tr -d '\\r' | sed -n 's/^header-name: *//Ip')
                                                                     keep a response header
    until [ "$(curl ... | jq -r .status)" = monitoring ]; do sleep 1; done
                                                                     poll until a value is reached

A block runs when its info string says what to expect: ```` ```sh expect=201 error=instance_exists
contains=$WORKFLOW_ID ````. A ```` ```json response ```` block right after it documents the answer; its
keys must exist in the real answer. The ```` ```sh tour-setup ```` block starts the simulated servers and
the agent. Anything this module does not understand is a `TourSyntaxError` naming the doc line, so a
typo in the guide fails the test instead of being skipped.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = (
    "CurlCall",
    "Example",
    "FleetLine",
    "SetupStep",
    "Tour",
    "TourSyntaxError",
    "jq_path",
    "parse_curl",
    "parse_tour",
    "shell_words",
)

_NAME = r"[A-Z_][A-Z0-9_]*"
_CAPTURE_JSON = re.compile(
    rf"^(?P<name>{_NAME})=\$\((?P<curl>curl\s.*?)\s*\|\s*jq -r (?P<expr>'[^']*'|\S+)\)$", re.DOTALL
)
_CAPTURE_HEADER = re.compile(
    rf"^(?P<name>{_NAME})=\$\((?P<curl>curl\s.*?)\s*\|\s*tr -d '\\r'\s*\|\s*"
    r"sed -n 's/\^(?P<header>[A-Za-z0-9-]+): \*//Ip'\)$",
    re.DOTALL,
)
_WAIT = re.compile(
    r'^until \[ "\$\((?P<curl>curl\s.*?)\s*\|\s*jq -r (?P<expr>\'[^\']*\'|\S+)\)" = (?P<value>"[^"]*"|\S+) \]; '
    r"do sleep [0-9.]+; done$",
    re.DOTALL,
)
_PYTHON = r"\S*python3?"
_SIMULATE = re.compile(rf"^{_PYTHON} -m performance_agent simulate (?P<args>.*?)\s*&$")
_SERVE = re.compile(rf"^(?:{_PYTHON} -m performance_agent serve|make run)\s*&$")
_READY = re.compile(r"^until curl -sf (?P<url>\S+) >/dev/null; do sleep [0-9.]+; done$")
_EXPORT = re.compile(r"^export\s+(?P<assignments>.+)$")
_JQ_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\.?\[(\d+)\]")
_QUIET_FLAGS = frozenset({"-s", "-S", "-sS", "-Ss", "-i", "-f", "-sf"})

Lookup = Callable[[str], str]


class TourSyntaxError(ValueError):
    """The guide holds something the runner cannot execute faithfully."""


@dataclass(frozen=True, slots=True)
class CurlCall:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str | None


@dataclass(frozen=True, slots=True)
class FleetLine:
    engine: str
    count: int
    base_port: int
    time_scale: float


@dataclass(frozen=True, slots=True)
class SetupStep:
    """One statement of the setup block, in order: `export` (raw assignments), `simulate`, `serve` or `ready`."""

    kind: Literal["export", "simulate", "serve", "ready"]
    text: str
    fleet: FleetLine | None = None


@dataclass(frozen=True, slots=True)
class Example:
    line: int
    command: str
    kind: Literal["call", "capture_json", "capture_header", "wait"]
    curl: str
    expect: int
    error: str | None = None
    contains: tuple[str, ...] = ()
    name: str | None = None
    expr: str | None = None
    value: str | None = None
    response: Any = None
    has_response: bool = False


@dataclass(frozen=True, slots=True)
class Tour:
    setup: tuple[SetupStep, ...]
    examples: tuple[Example, ...]


def _read_variable(text: str, start: int, lookup: Lookup) -> tuple[str, int]:
    """`$NAME` or `${NAME}` at `start` (which points at `$`): the value and the index after it."""
    if text.startswith("${", start):
        end = text.find("}", start)
        if end < 0:
            raise TourSyntaxError(f"unterminated ${{...}} in {text!r}")
        return lookup(text[start + 2 : end]), end + 1
    match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, start + 1)
    if match is None:
        raise TourSyntaxError(f"a lone $ in {text!r}")
    return lookup(match.group()), match.end()


def shell_words(text: str, lookup: Lookup) -> list[str]:
    """Split like a POSIX shell: single quotes literal, double quotes and bare words expand `$NAME`."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            index += 1
            continue
        in_word = True
        if char == "'":
            end = text.find("'", index + 1)
            if end < 0:
                raise TourSyntaxError(f"unterminated single quote in {text!r}")
            current.append(text[index + 1 : end])
            index = end + 1
        elif char == '"':
            index += 1
            while True:
                if index >= len(text):
                    raise TourSyntaxError(f"unterminated double quote in {text!r}")
                char = text[index]
                if char == '"':
                    index += 1
                    break
                if char == "\\" and index + 1 < len(text) and text[index + 1] in '"\\$`':
                    current.append(text[index + 1])
                    index += 2
                elif char == "$":
                    value, index = _read_variable(text, index, lookup)
                    current.append(value)
                else:
                    current.append(char)
                    index += 1
        elif char == "\\" and index + 1 < len(text):
            current.append(text[index + 1])
            index += 2
        elif char == "$":
            value, index = _read_variable(text, index, lookup)
            current.append(value)
        else:
            current.append(char)
            index += 1
    if in_word:
        words.append("".join(current))
    return words


def parse_curl(text: str, lookup: Lookup) -> CurlCall:
    """The request a `curl` command line sends; options outside the small supported set are refused."""
    words = shell_words(text, lookup)
    if not words or words[0] != "curl":
        raise TourSyntaxError(f"not a curl command: {text!r}")
    method: str | None = None
    headers: list[tuple[str, str]] = []
    body: str | None = None
    urls: list[str] = []
    rest = iter(words[1:])
    for word in rest:
        if word in _QUIET_FLAGS:
            continue
        if word == "-I":
            method = "HEAD"
        elif word in ("-X", "-H", "-d", "--data-raw", "-D", "-o"):
            value = next(rest, None)
            if value is None:
                raise TourSyntaxError(f"{word} needs a value in {text!r}")
            if word == "-X":
                method = value
            elif word == "-H":
                name, separator, header_value = value.partition(":")
                if not separator:
                    raise TourSyntaxError(f"header {value!r} has no ':' in {text!r}")
                headers.append((name.strip(), header_value.strip()))
            elif word in ("-d", "--data-raw"):
                body = value
            elif (word, value) not in (("-D", "-"), ("-o", "/dev/null")):
                raise TourSyntaxError(f"only -D - and -o /dev/null are supported, got {word} {value} in {text!r}")
        elif word.startswith("-"):
            raise TourSyntaxError(f"unsupported curl option {word!r} in {text!r}")
        else:
            urls.append(word)
    if len(urls) != 1:
        raise TourSyntaxError(f"expected exactly one URL, got {urls} in {text!r}")
    resolved = method or ("POST" if body is not None else "GET")
    return CurlCall(method=resolved, url=urls[0], headers=tuple(headers), body=body)


def jq_path(document: Any, expression: str) -> Any:
    """The subset of jq the guide uses: `.`, `.name`, `[index]`, chained (`.recommendations[0].id`)."""
    expression = expression.strip("'")
    if expression == ".":
        return document
    if not expression.startswith("."):
        raise TourSyntaxError(f"jq path must start with '.': {expression!r}")
    value, position = document, 0
    while position < len(expression):
        match = _JQ_STEP.match(expression, position)
        if match is None:
            raise TourSyntaxError(f"unsupported jq path {expression!r} at {position}")
        key, index = match.groups()
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        else:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        position = match.end()
    return value


def _info(info: str, line: int) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for token in info.split()[1:]:
        key, separator, value = token.partition("=")
        if not separator:
            fields.setdefault(token, [])
            continue
        if key not in ("expect", "error", "contains"):
            raise TourSyntaxError(f"line {line}: unknown example attribute {key!r}")
        fields.setdefault(key, []).append(value)
    return fields


def _command(lines: list[str]) -> str:
    """Drop comment lines, join `\\` continuations and quoted line breaks; one command per block."""
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#")).replace("\\\n", " ")
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    escaped = False
    for char in text:
        if quote is not None:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == "\n":
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
    if quote is not None:
        raise TourSyntaxError("a quote is never closed")
    statements.append("".join(current))
    commands = [statement.strip() for statement in statements if statement.strip()]
    if len(commands) != 1:
        raise TourSyntaxError(f"an example block holds exactly one command, got {len(commands)}")
    return commands[0]


def _placeholder(name: str) -> str:
    return f"<{name}>"


def _example(lines: list[str], info: dict[str, list[str]], line: int) -> Example:
    command = _command(lines)
    expect_values = info.get("expect", [])
    if len(expect_values) != 1 or not expect_values[0].isdigit():
        raise TourSyntaxError(f"line {line}: expect= must be one HTTP status")
    errors = info.get("error", [])
    common: dict[str, Any] = {
        "line": line,
        "command": command,
        "expect": int(expect_values[0]),
        "error": errors[0] if errors else None,
        "contains": tuple(info.get("contains", [])),
    }
    if match := _CAPTURE_JSON.match(command):
        example = Example(kind="capture_json", curl=match["curl"], name=match["name"], expr=match["expr"], **common)
    elif match := _CAPTURE_HEADER.match(command):
        example = Example(kind="capture_header", curl=match["curl"], name=match["name"], expr=match["header"], **common)
    elif match := _WAIT.match(command):
        value = match["value"].strip('"')
        example = Example(kind="wait", curl=match["curl"], expr=match["expr"], value=value, **common)
    elif command.startswith("curl "):
        example = Example(kind="call", curl=command, **common)
    else:
        raise TourSyntaxError(f"line {line}: not one of the supported command shapes: {command!r}")
    parse_curl(example.curl, _placeholder)  # refuse unsupported options before anything runs
    if example.expr is not None and example.kind != "capture_header":
        jq_path({}, example.expr)
    return example


def _setup(lines: list[str], line: int) -> tuple[SetupStep, ...]:
    from performance_agent.simulator.cli import build_parser

    steps: list[SetupStep] = []
    for offset, raw in enumerate(lines, start=1):
        text = raw.split(" #", 1)[0].strip() if not raw.strip().startswith("#") else ""
        if not text:
            continue
        if match := _EXPORT.match(text):
            shell_words(match["assignments"], _placeholder)
            steps.append(SetupStep("export", match["assignments"]))
        elif match := _SIMULATE.match(text):
            try:
                args = build_parser().parse_args(shell_words(match["args"], _placeholder))
            except SystemExit:
                raise TourSyntaxError(f"line {line + offset}: the simulator refuses {text!r}") from None
            fleet = FleetLine(args.engine, args.count, args.base_port, args.time_scale)
            steps.append(SetupStep("simulate", text, fleet))
        elif _SERVE.match(text):
            steps.append(SetupStep("serve", text))
        elif match := _READY.match(text):
            steps.append(SetupStep("ready", match["url"]))
        else:
            raise TourSyntaxError(f"line {line + offset}: not a supported setup statement: {text!r}")
    return tuple(steps)


def parse_tour(markdown: str) -> Tour:
    """Every setup statement and example of a guide, in document order."""
    setup: tuple[SetupStep, ...] = ()
    examples: list[Example] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("```") or lines[index].strip() == "```":
            index += 1
            continue
        info, start = lines[index][3:].strip(), index + 1
        end = next((i for i in range(start, len(lines)) if lines[i].strip() == "```"), None)
        if end is None:
            raise TourSyntaxError(f"line {start}: unterminated code block")
        body, line = lines[start:end], start
        fields = _info(info, line)
        if "tour-setup" in fields:
            if setup:
                raise TourSyntaxError(f"line {line}: a second tour-setup block")
            setup = _setup(body, line)
        elif "expect" in fields:
            try:
                examples.append(_example(body, fields, line))
            except TourSyntaxError as error:
                raise TourSyntaxError(f"line {line}: {error}") from None
        elif info.split()[:2] == ["json", "response"]:
            if not examples or examples[-1].has_response:
                raise TourSyntaxError(f"line {line}: a response block must follow its example")
            previous = examples[-1]
            try:
                documented = json.loads("\n".join(body))
            except json.JSONDecodeError as error:
                raise TourSyntaxError(f"line {line}: the response block is not JSON: {error}") from None
            examples[-1] = dataclasses.replace(previous, response=documented, has_response=True)
        index = end + 1
    if not setup:
        raise TourSyntaxError("the guide has no tour-setup block")
    return Tour(setup=setup, examples=tuple(examples))
