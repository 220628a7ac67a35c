"""One table per simulated engine: its flags, how they become physics, its metric set and pages.

Everything engine-specific that an instance needs is reached through `ENGINES[name]`, so the
instance, server and fleet code never branch on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from performance_agent.simulator.capacity import derive_sglang, derive_tgi, derive_vllm
from performance_agent.simulator.knobs import ENGINE_KNOBS, EngineParams, Flags, Hardware, KnobSpec, SimulatedModel
from performance_agent.simulator.load_model import EventSink, ModelGauges
from performance_agent.simulator.sglang_page import SGLANG_VERSIONS, SglangRank, render_sglang, sglang_server_info
from performance_agent.simulator.tgi_page import TGI_VERSIONS, TgiRank, render_tgi, tgi_info
from performance_agent.simulator.vllm_page import VLLM_PROFILES, VllmRank, render_vllm

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("ENGINES", "EngineBinding", "PageContext")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class PageContext:
    """What a page needs besides the counters: identity, launch flags and derived limits."""

    model_name: str
    engine_version: str
    started_at: float
    cpu_seconds: float
    flags: dict[str, int | float | str | bool | None]
    params: EngineParams


Ranks = list[tuple[EventSink, ModelGauges]]


@dataclass(frozen=True, slots=True)
class EngineBinding:
    name: str
    versions: dict[str, str]
    knobs: tuple[KnobSpec, ...]
    derive: Callable[[Flags, dict[str, str], Hardware, SimulatedModel], EngineParams]
    new_rank: Callable[[str, EngineParams, Flags], EventSink]
    render: Callable[[str, PageContext, Ranks], str]
    rank_count: Callable[[Flags], int]
    content_type: str
    info_routes: dict[str, Callable[[PageContext], dict[str, object]]]
    model_flag: str

    def knob(self, name: str) -> KnobSpec | None:
        for spec in self.knobs:
            if spec.name == name:
                return spec
        return None


def _vllm_render(profile: str, ctx: PageContext, ranks: Ranks) -> str:
    return render_vllm(VLLM_PROFILES[profile], ctx, [(cast("VllmRank", r), g) for r, g in ranks])


def _tgi_rank(profile: str, params: EngineParams, flags: Flags) -> EventSink:
    # TGI forces waiting requests in after `max_waiting_tokens` decode steps (~20 ms each).
    return TgiRank(params.max_input_tokens, params.max_model_len, flags.integer("max_waiting_tokens") * 0.02)


ENGINES: dict[str, EngineBinding] = {
    "vllm": EngineBinding(
        name="vllm",
        versions={key: profile.version for key, profile in VLLM_PROFILES.items()},
        knobs=ENGINE_KNOBS["vllm"],
        derive=lambda flags, _env, hw, model: derive_vllm(flags, hw, model),
        new_rank=lambda profile, params, _flags: VllmRank(
            VLLM_PROFILES[profile], params.max_model_len, params.block_size
        ),
        render=_vllm_render,
        rank_count=lambda flags: max(1, flags.integer("data_parallel_size", 1)),
        content_type=PROMETHEUS_TEXT,
        info_routes={"/version": lambda ctx: {"version": ctx.engine_version}},
        model_flag="served_model_name",
    ),
    "tgi": EngineBinding(
        name="tgi",
        versions=dict(TGI_VERSIONS),
        knobs=ENGINE_KNOBS["tgi"],
        derive=derive_tgi,
        new_rank=_tgi_rank,
        render=lambda _profile, ctx, ranks: render_tgi(ctx, [(cast("TgiRank", r), g) for r, g in ranks]),
        rank_count=lambda _flags: 1,
        content_type="text/plain; charset=utf-8",
        info_routes={"/info": tgi_info},
        model_flag="model_id",
    ),
    "sglang": EngineBinding(
        name="sglang",
        versions=dict(SGLANG_VERSIONS),
        knobs=ENGINE_KNOBS["sglang"],
        derive=lambda flags, _env, hw, model: derive_sglang(flags, hw, model),
        new_rank=lambda profile, _params, _flags: SglangRank(old=profile == "old"),
        render=lambda _profile, ctx, ranks: render_sglang(ctx, [(cast("SglangRank", r), g) for r, g in ranks]),
        rank_count=lambda _flags: 1,
        content_type=PROMETHEUS_TEXT,
        info_routes={"/get_server_info": sglang_server_info},
        model_flag="served_model_name",
    ),
}
