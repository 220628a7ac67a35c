"""Validation of the control API's JSON bodies (faults and offered load), kept free of I/O.

A fault describes the instance's surroundings, not its state, so faults survive restarts and
config changes until cleared. Setting a key to `null`, `false` or `0` clears that fault;
`{"clear": true}` clears all of them first.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from performance_agent.simulator.load_model import Workload

__all__ = ("ControlError", "Faults", "merge_faults", "merge_workload")


class ControlError(Exception):
    """A control request the simulator refuses; `status` and `code` go into the JSON reply."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Faults:
    """Injected trouble.

    latency_regression: every engine step takes this factor longer (1 = none). Queueing follows,
        so near capacity the latencies grow by more than the factor.
    ttft_regression: every request reports this factor more time before its first token (queue and
        prefill, hence TTFT, and e2e by the same seconds); decode and capacity stay as they are.
        An exact "1.5x TTFT" at any load, where `latency_regression` 1.5 may tip a busy server over.
    kv_pressure: fraction of the KV pool (measured when set) held by something else, e.g.
        long-lived sessions; usage rises and vLLM/SGLang start preempting.
    error_burst: fraction of arriving requests that fail.
    unreachable: the data plane refuses connections (own port closed; on the shared port the
        connection is closed without an answer). The control API keeps answering.
    garbage_page: `/metrics` answers 200 with an HTML error page instead of Prometheus text.
    scrape_delay_s: wall seconds `/metrics` waits before answering (for scrape timeouts).
    http_error: status code `/metrics` answers with instead of the page.
    """

    latency_regression: float = 1.0
    ttft_regression: float = 1.0
    kv_pressure: float = 0.0
    error_burst: float = 0.0
    unreachable: bool = False
    garbage_page: bool = False
    scrape_delay_s: float = 0.0
    http_error: int | None = None

    def active(self) -> dict[str, object]:
        defaults = Faults()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(defaults, f.name)
        }


def _number(key: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ControlError(400, "invalid_value", f"{key} must be a number, got {value!r}")
    number = float(value)
    if number < low or number > high or (low_open and number == low):
        bracket = "(" if low_open else "["
        raise ControlError(400, "invalid_value", f"{key} must be within {bracket}{low}, {high}], got {number}")
    return number


def merge_faults(current: Faults, body: dict[str, object]) -> Faults:
    """Apply a `POST /control/faults` body to the current faults."""
    base = Faults() if body.get("clear") is True else current
    changes: dict[str, object] = {}
    for key, value in body.items():
        if key == "clear":
            if not isinstance(value, bool):
                raise ControlError(400, "invalid_value", "clear must be true or false")
            continue
        if key not in Faults.__dataclass_fields__:
            known = ", ".join(Faults.__dataclass_fields__)
            raise ControlError(400, "unknown_fault", f"unknown fault {key!r}; known: {known}")
        default = getattr(Faults(), key)
        if (
            value is None
            or value is False
            or (isinstance(value, int | float) and not isinstance(value, bool) and value == 0)
        ):
            changes[key] = default
        elif key in ("unreachable", "garbage_page"):
            if value is not True:
                raise ControlError(400, "invalid_value", f"{key} must be true or false")
            changes[key] = True
        elif key in ("latency_regression", "ttft_regression"):
            changes[key] = _number(key, value, 0.0, 1000.0, low_open=True)
        elif key == "kv_pressure":
            changes[key] = _number(key, value, 0.0, 0.99)
        elif key == "error_burst":
            changes[key] = _number(key, value, 0.0, 1.0)
        elif key == "scrape_delay_s":
            changes[key] = _number(key, value, 0.0, 600.0)
        else:
            changes[key] = int(_number(key, value, 400, 599))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


_WORKLOAD_LIMITS = {
    "arrival_rate_per_s": (0.0, 10_000.0),
    "prompt_tokens_mean": (1.0, 1_000_000.0),
    "output_tokens_mean": (1.0, 1_000_000.0),
    "length_sigma": (0.0, 3.0),
    "max_tokens": (1.0, 1_000_000.0),
    "prefix_share": (0.0, 1.0),
}


def merge_workload(current: Workload, body: dict[str, object]) -> Workload:
    """Apply a `POST /control/load` body (any subset of the `Workload` fields)."""
    changes: dict[str, float | int] = {}
    for key, value in body.items():
        limits = _WORKLOAD_LIMITS.get(key)
        if limits is None:
            raise ControlError(
                400, "unknown_field", f"unknown load field {key!r}; known: {', '.join(_WORKLOAD_LIMITS)}"
            )
        number = _number(key, value, *limits)
        changes[key] = int(number) if key == "max_tokens" else number
    return dataclasses.replace(current, **changes)  # type: ignore[arg-type]
