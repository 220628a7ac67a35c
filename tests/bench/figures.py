"""A measured figure and the command that reproduces it, as written into docs/benchmarks.md."""

from __future__ import annotations

import msgspec

__all__ = ("Figure",)


class Figure(msgspec.Struct, kw_only=True):
    section: str
    name: str
    value: str
    target: str
    met: bool | None
    command: str
