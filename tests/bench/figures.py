"""A measured figure and the command that reproduces it, as written into docs/benchmarks.md."""

from __future__ import annotations

import msgspec

__all__ = ("Figure", "render_section")


class Figure(msgspec.Struct, kw_only=True):
    section: str
    name: str
    value: str
    target: str
    met: bool | None
    command: str


def render_section(figures: list[Figure]) -> str:
    """The figures as docs/benchmarks.md shows them: one `## section` and its table per run of equal sections."""
    lines: list[str] = []
    section = None
    for index, figure in enumerate(figures):
        if figure.section != section:
            section = figure.section
            lines += [f"## {section}", "", "| Figure | Value | Target | Met | Command |", "|---|---|---|---|---|"]
        met = "-" if figure.met is None else ("yes" if figure.met else "**no**")
        lines.append(f"| {figure.name} | {figure.value} | {figure.target} | {met} | `{figure.command}` |")
        if index == len(figures) - 1 or figures[index + 1].section != section:
            lines.append("")
    return "\n".join(lines)
