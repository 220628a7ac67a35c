"""What a GPU model can run, by name: FP8 tensor cores and Marlin 4/8-bit kernels.

Matched on the declared GPU name (case-insensitive substrings); an undeclared or unlisted GPU
is "unknown", which the planner states as an assumption rather than deciding.
"""

from __future__ import annotations

__all__ = ("supports_fp8", "supports_marlin")

# compute capability >= 8.9 (Ada, Hopper, Blackwell) or AMD MI300-class
_FP8 = (
    "h100",
    "h200",
    "h20",
    "h800",
    "gh200",
    "l4",
    "l40",
    "rtx 4090",
    "rtx 6000 ada",
    "b100",
    "b200",
    "gb200",
    "mi300",
    "mi325",
    "mi355",
)
# compute capability 8.0/8.6 (Ampere): no FP8, Marlin yes
_AMPERE = ("a100", "a800", "a10", "a30", "a40", "a16", "a2", "rtx 3090", "rtx a6000")
# compute capability < 8.0: neither
_OLDER = ("v100", "t4", "p100", "p40", "k80")


def _family(name: str | None) -> str | None:
    if not name:
        return None
    lowered = name.lower()
    for family, names in (("fp8", _FP8), ("ampere", _AMPERE), ("older", _OLDER)):
        if any(candidate in lowered for candidate in names):
            return family
    return None


def supports_fp8(gpu_name: str | None) -> bool | None:
    """FP8 weights (W8A8) need compute capability >= 8.9; None when the GPU is unknown."""
    family = _family(gpu_name)
    return None if family is None else family == "fp8"


def supports_marlin(gpu_name: str | None) -> bool | None:
    """Marlin INT4/INT8 weight kernels need compute capability >= 8.0; None when the GPU is unknown."""
    family = _family(gpu_name)
    return None if family is None else family in ("fp8", "ampere")
