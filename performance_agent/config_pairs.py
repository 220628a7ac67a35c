"""`name=value` list settings (`PERF_AGENT_SLO_DEFAULTS=ttft_p99_s=1.5,error_rate=0.02`) read into typed Structs.

Why `name=value` lists: the environment holds strings, and one comma-separated variable per
concern keeps every target and threshold configurable without a variable for each. Names and
ranges are those of the Struct read into, so a typo or an out-of-range value stops start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("convert_pairs", "parse_pairs")

T = TypeVar("T")


def parse_pairs(entries: Sequence[str], setting: str) -> dict[str, str]:
    """`["a=1", "b=2"]` → `{"a": "1", "b": "2"}`; raises ValueError naming `setting` on a malformed entry."""
    pairs: dict[str, str] = {}
    for entry in entries:
        name, separator, value = entry.partition("=")
        if not separator or not name.strip() or not value.strip():
            raise ValueError(f"{setting}: expected name=value entries, got {entry!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def convert_pairs(entries: Sequence[str], setting: str, target: type[T]) -> T:
    raw: dict[str, object] = dict(parse_pairs(entries, setting))
    for name, value in raw.items():
        if isinstance(value, str) and value.lower() in ("none", "null"):
            raw[name] = None
    try:
        return msgspec.convert(raw, target, strict=False)
    except msgspec.ValidationError as error:
        message, _, path = str(error).partition(" - at `$.")
        field = path.rstrip("`")
        raise ValueError(f"{setting}: {field + ': ' if field else ''}{message}") from None
    except ValueError as error:  # a rule across fields (__post_init__)
        raise ValueError(f"{setting}: {error}") from None
