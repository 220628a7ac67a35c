"""SLO targets: what each registered instance promises, and the configured defaults for those that say nothing.

They belong to the registry (they are part of a registration and of `PUT /instances/{id}/slo`);
analysis and alerting read them from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from performance_agent.config_pairs import convert_pairs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from performance_agent.fleet.ports import StoredInstance

__all__ = ("SloTargets", "SloTargetsUpdate", "effective_targets", "slo_defaults")

Positive = Annotated[float, msgspec.Meta(gt=0)]
Ratio = Annotated[float, msgspec.Meta(gt=0, le=1)]


class SloTargets(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Service level objectives of one instance. A window is good when it meets an objective.

    Constraints are enforced when decoded (`msgspec.convert` / `msgspec.json.decode`), which is
    how every request body and stored value arrives; use `parse_slo_targets` for mappings.
    """

    ttft_p99_s: Positive = 2.0
    ttft_p95_s: Positive = 1.0
    itl_p99_s: Positive = 0.1
    e2e_p99_s: Positive = 30.0
    error_rate: Ratio = 0.01
    min_generation_tokens_per_s: Positive | None = None
    target_ratio: Ratio = 0.99


BoundedPositive = Annotated[float, msgspec.Meta(gt=0, le=1e9)]


class SloTargetsUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """SLO targets to set; an omitted target falls back to the configured default.

    Latencies in seconds (> 0), `error_rate` and `target_ratio` as fractions in (0, 1].
    `min_generation_tokens_per_s: null` removes the throughput floor.
    """

    ttft_p99_s: BoundedPositive | msgspec.UnsetType = msgspec.UNSET
    ttft_p95_s: BoundedPositive | msgspec.UnsetType = msgspec.UNSET
    itl_p99_s: BoundedPositive | msgspec.UnsetType = msgspec.UNSET
    e2e_p99_s: BoundedPositive | msgspec.UnsetType = msgspec.UNSET
    error_rate: Ratio | msgspec.UnsetType = msgspec.UNSET
    min_generation_tokens_per_s: BoundedPositive | msgspec.UnsetType | None = msgspec.UNSET
    target_ratio: Ratio | msgspec.UnsetType = msgspec.UNSET

    def over(self, base: SloTargets) -> SloTargets:
        """`base` with every target this update names replaced.

        Why every writer goes through here with the configured defaults as `base`: registration,
        replacement and `PUT /slo` must agree on what an omitted target means.
        """
        given = {f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not msgspec.UNSET}
        return msgspec.structs.replace(base, **given)


def slo_defaults(entries: Sequence[str], setting: str = "PERF_AGENT_SLO_DEFAULTS") -> SloTargets:
    """Targets for instances that declare none; unnamed targets keep their built-in defaults."""
    return convert_pairs(entries, setting, SloTargets)


def effective_targets(
    stored: StoredInstance, defaults: SloTargets
) -> tuple[SloTargets, Literal["instance", "defaults"]]:
    """The instance's own targets, or the configured defaults when it declares none."""
    if stored.spec.slo is not None:
        return stored.spec.slo, "instance"
    return defaults, "defaults"
