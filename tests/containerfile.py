"""A small reader for the repository's Containerfile and .containerignore.

There is no container engine on the build machines, so the image is checked by reading its
recipe: stages, the final user, the health check, the command. The parser covers what a
Containerfile is made of here (line continuations, comments, JSON and shell forms, ARG
defaults, `--flag=value` options) and fails loudly on anything it does not understand, so a
new construct cannot slip past the checks unread.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = (
    "ContainerIgnore",
    "Containerfile",
    "Instruction",
    "Stage",
    "parse_containerfile",
    "parse_containerignore",
)


KNOWN_INSTRUCTIONS = frozenset(
    {
        "FROM",
        "ARG",
        "ENV",
        "RUN",
        "COPY",
        "ADD",
        "WORKDIR",
        "USER",
        "EXPOSE",
        "HEALTHCHECK",
        "CMD",
        "ENTRYPOINT",
        "LABEL",
        "VOLUME",
        "STOPSIGNAL",
        "SHELL",
        "ONBUILD",
    }
)

_OPTION = re.compile(r"--([a-z-]+)(?:=(\S+))?")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str
    line: int

    @property
    def options(self) -> dict[str, str]:
        """Leading `--name=value` options (`COPY --from=builder`, `HEALTHCHECK --interval=30s`)."""
        found: dict[str, str] = {}
        for token in self.arguments.split():
            match = _OPTION.fullmatch(token)
            if match is None:
                break
            found[match.group(1)] = match.group(2) or ""
        return found

    @property
    def body(self) -> str:
        """The arguments after the leading options."""
        tokens = self.arguments.split(" ")
        while tokens and (tokens[0] == "" or _OPTION.fullmatch(tokens[0])):
            tokens.pop(0)
        return " ".join(tokens).strip()

    def exec_form(self) -> list[str]:
        """The JSON-array form (`CMD ["a", "b"]`); shell form is an error because signals would go to sh."""
        loaded = json.loads(self.body)
        if not isinstance(loaded, list) or not all(isinstance(item, str) for item in loaded):
            raise ValueError(f"line {self.line}: {self.keyword} is not a JSON array of strings")
        return loaded

    def key_values(self) -> dict[str, str]:
        """`ENV a=1 b="two words"` and `LABEL` pairs; the legacy `ENV a 1` form is rejected."""
        pairs: dict[str, str] = {}
        for token in shlex.split(self.body):
            name, separator, value = token.partition("=")
            if not separator:
                raise ValueError(f"line {self.line}: {self.keyword} {token!r} is not in name=value form")
            pairs[name] = value
        return pairs


@dataclass(slots=True)
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        matching = self.all(keyword)
        return matching[-1] if matching else None

    def args(self, global_args: dict[str, str]) -> dict[str, str]:
        """Build arguments visible in the stage; a bare `ARG NAME` re-imports the global default."""
        values: dict[str, str] = {}
        for instruction in self.all("ARG"):
            name, separator, default = instruction.body.partition("=")
            values[name] = default if separator else global_args.get(name, "")
        return values

    def env(self, global_args: dict[str, str]) -> dict[str, str]:
        """Environment as the stage ends up with it, `${VAR}` references expanded."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for name, value in instruction.key_values().items():
                values[name] = expand(value, {**self.args(global_args), **values}, keep_unknown=True)
        return values


@dataclass(slots=True)
class Containerfile:
    global_args: dict[str, str]
    stages: list[Stage]
    directives: dict[str, str]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_names(self) -> set[str]:
        return {stage.name for stage in self.stages if stage.name is not None}


def expand(text: str, variables: dict[str, str], *, keep_unknown: bool = False) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in variables:
            return variables[name]
        if keep_unknown:
            return match.group(0)
        raise ValueError(f"${{{name}}} has no default value")

    return _VARIABLE.sub(replace, text)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines; comment lines inside a continuation are dropped, as the engines do."""
    joined: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        joined.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    if buffer:
        raise ValueError(f"line {start}: the file ends inside a line continuation")
    return joined


def _directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in text.splitlines():
        match = re.fullmatch(r"#\s*([a-z]+)\s*=\s*(\S+)\s*", raw.strip())
        if match is None:
            break
        found[match.group(1)] = match.group(2)
    return found


def parse_containerfile(path: Path) -> Containerfile:
    text = path.read_text(encoding="utf-8")
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, logical in _logical_lines(text):
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        if keyword not in KNOWN_INSTRUCTIONS:
            raise ValueError(f"line {line}: unknown instruction {keyword!r}")
        instruction = Instruction(keyword=keyword, arguments=arguments.strip(), line=line)
        if keyword == "FROM":
            words = instruction.body.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            if len(words) not in (1, 3) or (len(words) == 3 and name is None):
                raise ValueError(f"line {line}: cannot read FROM {instruction.body!r}")
            stages.append(Stage(image=expand(words[0], global_args), name=name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"line {line}: only ARG may come before the first FROM")
            name, _, default = instruction.body.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise ValueError(f"{path} has no FROM")
    return Containerfile(global_args=global_args, stages=stages, directives=_directives(text))


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        elif pattern[index] == "[":
            closing = pattern.index("]", index)
            parts.append(pattern[index : closing + 1])
            index = closing + 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts))


@dataclass(frozen=True, slots=True)
class ContainerIgnore:
    """Docker/podman ignore-file semantics.

    The last matching rule wins, and excluding a directory excludes everything below it.
    """

    rules: tuple[tuple[bool, re.Pattern[str]], ...]

    def excludes(self, relative_path: str) -> bool:
        parts = relative_path.strip("/").split("/")
        candidates = ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
        excluded = False
        for negated, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not negated
        return excluded


def parse_containerignore(path: Path) -> ContainerIgnore:
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return ContainerIgnore(rules=tuple(rules))
