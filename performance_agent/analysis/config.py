"""Configured detector thresholds, read from the `name=value` entries of `PERF_AGENT_DETECTOR_THRESHOLDS`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.analysis.thresholds import Thresholds
from performance_agent.config_pairs import convert_pairs

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("detector_thresholds",)


def detector_thresholds(entries: Sequence[str], setting: str = "PERF_AGENT_DETECTOR_THRESHOLDS") -> Thresholds:
    """Thresholds with the named overrides; the rest keep the documented defaults."""
    return convert_pairs(entries, setting, Thresholds)
