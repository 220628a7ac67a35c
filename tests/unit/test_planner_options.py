"""Option builders on the less common paths: chunked prefill, block size, retractions, memory ceilings."""

from __future__ import annotations

import pytest

from performance_agent.analysis.detectors import detect_bottlenecks
from performance_agent.engines.knobs import ConfigValue
from performance_agent.optimization.planner import build_plan
from performance_agent.optimization.schemas import GpuSpec, PlanDraft, Recommendation
from tests.unit.test_detectors_support import healthy_figures
from tests.unit.test_planner import PAGES, by_id, scenario


def draft_for(engine: str, bottleneck: str, page: dict[str, ConfigValue] | None = None, **kwargs: object) -> PlanDraft:
    figures = scenario(engine, bottleneck)  # type: ignore[arg-type]
    findings = detect_bottlenecks(figures).findings
    return build_plan(findings, PAGES[engine] if page is None else page, engine=engine, figures=figures, **kwargs)  # type: ignore[arg-type]


def ids(recommendations: list[Recommendation]) -> set[str]:
    return {r.id for r in recommendations}


def test_vllm_chunked_prefill_turned_on_for_decode_stalls() -> None:
    draft = draft_for("vllm", "decode_latency", engine_args={"--no-enable-chunked-prefill": True})

    rec = by_id(draft.recommendations, "batching:enable-chunked-prefill")
    assert rec.changes == {"--enable-chunked-prefill": True}
    # healthy ITL mean 21 ms against a 250 ms p99: at best the tail shrinks to the mean
    assert rec.estimated_impact["itl_p99_s"].low == pytest.approx(-(1 - 0.021 / 0.25), abs=1e-4)


@pytest.mark.parametrize(
    ("gpu", "size"), [(None, 4096), (GpuSpec(memory_gib=80.0), 8192), (GpuSpec(memory_gib=24.0), 2048)]
)
def test_sglang_chunking_restored_at_the_engines_own_size(gpu: GpuSpec | None, size: int) -> None:
    draft = draft_for("sglang", "decode_latency", engine_args={"chunked-prefill-size": -1}, gpu=gpu)

    rec = by_id(draft.recommendations, "batching:enable-chunked-prefill")
    assert rec.changes == {"--chunked-prefill-size": size}


def test_sglang_chunking_off_means_no_token_budget_raise() -> None:
    draft = draft_for("sglang", "prefill_latency", engine_args={"--chunked-prefill-size": -1})

    assert "batching:raise-token-budget" not in ids(draft.recommendations)
    assert "token budget not raised: --chunked-prefill-size -1 disables chunking" in draft.notes


def test_token_budget_at_its_ceiling_is_left_alone() -> None:
    draft = draft_for("vllm", "prefill_latency", engine_args={"--max-num-batched-tokens": 65536})

    assert "batching:raise-token-budget" not in ids(draft.recommendations)
    assert "token budget not raised: --max-num-batched-tokens is already 65536" in draft.notes


def test_sglang_retractions_raise_conservativeness() -> None:
    draft = draft_for("sglang", "kv_cache_pressure")

    rec = by_id(draft.recommendations, "batching:admit-more-conservatively")
    assert rec.changes == {"--schedule-conservativeness": 1.3}
    assert rec.estimated_impact["generation_tokens_per_s"].low == pytest.approx(1 / 1.3 - 1, abs=1e-4)


def test_vllm_preemptions_offer_a_smaller_batch() -> None:
    draft = draft_for("vllm", "kv_cache_pressure")

    rec = by_id(draft.recommendations, "batching:fewer-sequences-no-preemption")
    assert rec.changes == {"--max-num-seqs": 14}  # 90% of 16 running, rounded down


def test_block_size_is_recommended_only_for_short_sequences() -> None:
    figures = healthy_figures(
        "vllm",
        load__kv_cache_usage=0.95,
        throughput__prompt_tokens_per_s=200.0,  # 40 prompt tokens per request at 5 req/s
        throughput__generation_tokens_per_s=100.0,
    )
    findings = detect_bottlenecks(figures).findings

    draft = build_plan(findings, PAGES["vllm"], engine="vllm", figures=figures)

    rec = by_id(draft.recommendations, "kv_cache:smaller-blocks")
    assert rec.changes == {"--block-size": 8}
    resident = (200 + 100 / 2) / 5  # 50 tokens per sequence
    assert rec.estimated_impact["kv_cache_capacity_tokens"].high == pytest.approx(
        (resident + 7.5) / (resident + 3.5) - 1, abs=1e-4
    )
    assert rec.risk.stability == "medium"


@pytest.mark.parametrize(
    ("engine", "note"),
    [
        ("tgi", "block/page size: tgi has no flag for it (the attention backend decides)"),
        ("sglang", "block/page size: --page-size is 1; nothing to gain"),
    ],
)
def test_block_size_notes_per_engine(engine: str, note: str) -> None:
    figures = healthy_figures(engine, load__kv_cache_usage=0.95, load__preemptions_per_s=0.5)
    findings = (
        detect_bottlenecks(figures).findings
        or detect_bottlenecks(healthy_figures("vllm", load__kv_cache_usage=0.95)).findings
    )

    draft = build_plan(findings, PAGES[engine], engine=engine, figures=figures)

    assert note in draft.notes


def test_memory_fraction_ceiling_and_tgi_note() -> None:
    at_ceiling = draft_for("vllm", "kv_cache_pressure", page={**PAGES["vllm"], "gpu_memory_utilization": "0.95"})
    tgi_kv = healthy_figures("tgi", load__kv_cache_usage=0.95)
    vllm_finding = detect_bottlenecks(healthy_figures("vllm", load__kv_cache_usage=0.95)).findings
    tgi = build_plan(vllm_finding, PAGES["tgi"], engine="tgi", figures=tgi_kv)

    assert "memory fraction not raised: --gpu-memory-utilization is already 0.95 (ceiling 0.95)" in at_ceiling.notes
    assert any(n.startswith("memory fraction not raised: tgi already lets the engine size") for n in tgi.notes)
    assert by_id(tgi.recommendations, "kv_cache:fp8-kv-cache").changes == {"--kv-cache-dtype": "fp8_e4m3fn"}


def test_raised_memory_fraction_estimate() -> None:
    draft = draft_for("vllm", "kv_cache_pressure", gpu=GpuSpec(name="H100", memory_gib=80.0))

    rec = by_id(draft.recommendations, "kv_cache:raise-memory-fraction")
    assert rec.changes == {"--gpu-memory-utilization": 0.95}
    capacity = rec.estimated_impact["kv_cache_capacity_tokens"]
    assert 0 < capacity.low < capacity.high  # wide: model size not declared
    assert any("GPU memory or model size not declared" in a for a in rec.assumptions)


def test_tgi_decode_without_the_token_pool_is_noted() -> None:
    draft = draft_for("tgi", "decode_latency", page={})

    assert "batching:lower-batch-for-itl" not in ids(draft.recommendations)
    assert "TGI batch not lowered: current --max-batch-total-tokens unknown" in draft.notes


def test_tgi_queueing_bound_by_kv_gets_capacity_not_admission() -> None:
    figures = scenario("tgi", "queueing")
    figures.load.kv_cache_usage = 0.95  # reserved tokens near the limit
    findings = detect_bottlenecks(figures).findings

    draft = build_plan(findings, PAGES["tgi"], engine="tgi", figures=figures)

    assert "batching:admit-waiting-sooner" not in ids(draft.recommendations)
    assert draft.recommendations[0].id == "kv_cache:fp8-kv-cache"
    assert draft.recommendations[0].addresses == ["queueing"]


def test_no_figures_still_plans_and_says_so() -> None:
    findings = detect_bottlenecks(scenario("vllm", "kv_cache_pressure")).findings

    draft = build_plan(findings, PAGES["vllm"], engine="vllm")

    assert draft.recommendations[0].id == "kv_cache:fp8-kv-cache"
    assert "no window figures given: batch sizes and rates could not inform the estimates" in draft.notes
