"""Configured SLO defaults and detector thresholds, read from `name=value` entries of a setting.

Why `name=value` lists: the environment holds strings, and one comma-separated variable per
concern (`PERF_AGENT_SLO_DEFAULTS=ttft_p99_s=1.5,error_rate=0.02`) keeps every target and
threshold configurable without a variable for each. Names and ranges are those of
`SloTargets` and `Thresholds`, so a typo or an out-of-range value stops start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import msgspec

from performance_agent.analysis.schemas import SloTargets
from performance_agent.analysis.thresholds import Thresholds

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("detector_thresholds", "parse_pairs", "slo_defaults")

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


def _convert(entries: Sequence[str], setting: str, target: type[T]) -> T:
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


def slo_defaults(entries: Sequence[str], setting: str = "PERF_AGENT_SLO_DEFAULTS") -> SloTargets:
    """Targets for instances that declare none; unnamed targets keep their built-in defaults."""
    return _convert(entries, setting, SloTargets)


def detector_thresholds(entries: Sequence[str], setting: str = "PERF_AGENT_DETECTOR_THRESHOLDS") -> Thresholds:
    """Thresholds with the named overrides; the rest keep the documented defaults."""
    return _convert(entries, setting, Thresholds)
