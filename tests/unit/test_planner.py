"""The planner: first recommendation per single bottleneck and engine, exact flag spellings, constraints, order."""

from __future__ import annotations

from typing import Any

import pytest

from performance_agent.analysis.detectors import detect_bottlenecks
from performance_agent.analysis.schemas import BottleneckType, EvidenceItem, Finding, WindowFigures
from performance_agent.engines.knobs import ConfigValue
from performance_agent.optimization.planner import build_plan, plan
from performance_agent.optimization.schemas import Constraints, GpuSpec, ModelSpec, PlanDraft, Recommendation
from tests.unit.test_detectors_support import ENGINES, healthy_figures

PAGES: dict[str, dict[str, ConfigValue]] = {
    # what each adapter keeps from a page: vLLM cache_config_info labels, TGI/SGLang KV pool gauges
    "vllm": {
        "gpu_memory_utilization": "0.9",
        "block_size": "16",
        "cache_dtype": "auto",
        "enable_prefix_caching": "True",
    },
    "tgi": {"max_batch_total_tokens": 100000},
    "sglang": {"max_total_num_tokens": 200000},
}
H100 = GpuSpec(name="NVIDIA H100 80GB HBM3", memory_gib=80.0, count=1)
LLAMA_8B = ModelSpec(name="llama-3.1-8b", params_b=8.0, num_layers=32, num_kv_heads=8, head_dim=128, dtype="bfloat16")

SCENARIOS: dict[BottleneckType, dict[str, Any]] = {
    "kv_cache_pressure": {"load.kv_cache_usage": 0.97, "load.preemptions_per_s": 0.05},
    "queueing": {
        "load.requests_waiting": 10.0,
        "latency.queue_s.mean": 2.0,
        "latency.ttft_s.mean": 2.5,
        "latency.ttft_s.p99": 5.0,
        "load.kv_cache_usage": 0.7,
    },
    "prefill_latency": {"latency.ttft_s.p99": 2.5},
    "decode_latency": {"latency.itl_s.p99": 0.25},
    "underutilization": {
        "load.requests_running": 0.5,
        "throughput.generation_tokens_per_s": 20.0,
        "load.kv_cache_usage": 0.05,
    },
    "request_errors": {"errors.error_rate": 0.1},
}

# first recommendation of each single-bottleneck case with the page alone (nothing declared)
FIRST_UNDECLARED: dict[tuple[str, str], tuple[str, dict[str, ConfigValue], dict[str, str]]] = {
    ("vllm", "kv_cache_pressure"): ("kv_cache:fp8-kv-cache", {"--kv-cache-dtype": "fp8"}, {}),
    ("vllm", "queueing"): ("batching:raise-max-running", {"--max-num-seqs": 40}, {}),
    ("vllm", "prefill_latency"): ("batching:raise-token-budget", {"--max-num-batched-tokens": 16384}, {}),
    ("vllm", "decode_latency"): ("batching:lower-batch-for-itl", {"--max-num-seqs": 11}, {}),
    ("vllm", "underutilization"): ("kv_cache:lower-memory-fraction", {"--gpu-memory-utilization": 0.8}, {}),
    ("vllm", "request_errors"): ("kv_cache:lower-memory-fraction", {"--gpu-memory-utilization": 0.85}, {}),
    ("tgi", "queueing"): ("batching:admit-waiting-sooner", {"--max-waiting-tokens": 10}, {}),
    ("tgi", "prefill_latency"): ("batching:raise-token-budget", {"--max-batch-prefill-tokens": 20000}, {}),
    ("tgi", "decode_latency"): ("batching:lower-batch-for-itl", {"--max-batch-total-tokens": 68750}, {}),
    ("tgi", "underutilization"): ("kv_cache:lower-memory-fraction", {"--cuda-memory-fraction": 0.9}, {}),
    ("tgi", "request_errors"): ("batching:raise-max-concurrent-requests", {"--max-concurrent-requests": 256}, {}),
    ("sglang", "kv_cache_pressure"): ("kv_cache:fp8-kv-cache", {"--kv-cache-dtype": "fp8_e5m2"}, {}),
    ("sglang", "queueing"): ("batching:raise-max-running", {"--max-running-requests": 40}, {}),
    ("sglang", "prefill_latency"): ("batching:raise-token-budget", {"--chunked-prefill-size": 32768}, {}),
    ("sglang", "decode_latency"): ("batching:lower-batch-for-itl", {"--max-running-requests": 11}, {}),
    ("sglang", "underutilization"): ("quantization:fp8", {"--quantization": "fp8"}, {}),
}


def scenario(engine: str, bottleneck: BottleneckType) -> WindowFigures:
    return healthy_figures(engine, **{k.replace(".", "__"): v for k, v in SCENARIOS[bottleneck].items()})


def make_plan(engine: str, figures: WindowFigures, **kwargs: Any) -> PlanDraft:
    findings = detect_bottlenecks(figures).findings
    return build_plan(findings, PAGES[engine], engine=engine, figures=figures, **kwargs)


def by_id(recommendations: list[Recommendation], rec_id: str) -> Recommendation:
    [found] = [r for r in recommendations if r.id == rec_id]
    return found


@pytest.mark.parametrize(("case", "expected"), sorted(FIRST_UNDECLARED.items()))
def test_first_recommendation_of_each_single_bottleneck(
    case: tuple[str, BottleneckType], expected: tuple[str, dict[str, ConfigValue], dict[str, str]]
) -> None:
    engine, bottleneck = case
    draft = make_plan(engine, scenario(engine, bottleneck))

    first = draft.recommendations[0]
    assert bottleneck in first.addresses
    assert (first.id, first.changes, first.env) == expected
    assert first.requires_restart is True
    assert bottleneck in first.rationale


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("bottleneck", list(SCENARIOS))
def test_with_hardware_and_model_declared_the_first_still_addresses_it(engine: str, bottleneck: BottleneckType) -> None:
    figures = scenario(engine, bottleneck)
    findings = detect_bottlenecks(figures).findings
    if not any(f.type == bottleneck for f in findings):
        assert (engine, bottleneck) == ("tgi", "kv_cache_pressure")  # TGI cannot show KV pressure
        return

    recommendations = plan(findings, PAGES[engine], engine=engine, figures=figures, gpu=H100, model=LLAMA_8B)

    assert bottleneck in recommendations[0].addresses


def test_sglang_errors_without_gpu_memory_get_no_invented_fraction() -> None:
    draft = make_plan("sglang", scenario("sglang", "request_errors"))

    assert draft.recommendations == []
    assert "memory fraction not lowered: current --mem-fraction-static unknown (not on the page, not declared)" in (
        draft.notes
    )
    assert "no tuning option found for request_errors with what is known about this instance" in draft.notes


def test_sglang_errors_with_gpu_memory_use_the_computed_fraction() -> None:
    draft = make_plan("sglang", scenario("sglang", "request_errors"), gpu=H100)

    first = draft.recommendations[0]
    assert first.changes == {"--mem-fraction-static": round(0.836 - 0.05, 2)}
    assert draft.current_config.settings["memory_fraction"].source == "engine default"


def test_healthy_instance_gets_no_plan() -> None:
    draft = make_plan("vllm", healthy_figures("vllm"))

    assert draft.recommendations == []


@pytest.mark.parametrize(
    ("engine", "page", "changes", "env"),
    [
        ("vllm", {"enable_prefix_caching": "False"}, {"--enable-prefix-caching": True}, {}),
        ("tgi", {}, {}, {"PREFIX_CACHING": "1"}),
        ("sglang", {}, {"--disable-radix-cache": False}, {}),
    ],
)
def test_prefix_caching_uses_the_positive_spelling_or_env(
    engine: str, page: dict[str, ConfigValue], changes: dict[str, ConfigValue], env: dict[str, str]
) -> None:
    figures = scenario(engine, "prefill_latency")
    findings = detect_bottlenecks(figures).findings
    declared: dict[str, ConfigValue] = {"PREFIX_CACHING": "0"} if engine == "tgi" else {}
    if engine == "sglang":
        declared = {"--disable-radix-cache": True}

    draft = build_plan(findings, page, engine=engine, figures=figures, engine_args=declared)

    rec = by_id(draft.recommendations, "kv_cache:enable-prefix-caching")
    assert (rec.changes, rec.env) == (changes, env)
    # healthy default share: queue 0.01 s of a 0.12 s TTFT mean -> at best the remaining 91.7% goes
    assert rec.estimated_impact["ttft_p99_s"].low == pytest.approx(-(1 - 0.01 / 0.12), abs=1e-4)


def test_prefix_caching_already_on_is_not_proposed_and_unknown_is_noted() -> None:
    figures = scenario("vllm", "prefill_latency")
    findings = detect_bottlenecks(figures).findings

    on = build_plan(findings, PAGES["vllm"], engine="vllm", figures=figures)
    unknown = build_plan(findings, {}, engine="vllm", figures=figures)

    assert "kv_cache:enable-prefix-caching" not in {r.id for r in on.recommendations}
    assert any("prefix caching not proposed: whether it is on is unknown" in n for n in unknown.notes)


def test_quantization_respects_quality_risk_and_marks_checkpoint_methods_not_executable() -> None:
    figures = scenario("vllm", "kv_cache_pressure")

    strict = make_plan("vllm", figures, gpu=H100, model=LLAMA_8B)
    medium = make_plan("vllm", figures, gpu=H100, model=LLAMA_8B, constraints=Constraints(max_quality_risk="medium"))

    assert {r.id for r in strict.recommendations if r.type == "quantization"} == {"quantization:fp8"}
    assert "int8 not offered: quality risk medium exceeds max_quality_risk low" in strict.notes
    fp8 = by_id(medium.recommendations, "quantization:fp8")
    int4 = by_id(medium.recommendations, "quantization:int4-awq")
    int8 = by_id(medium.recommendations, "quantization:int8")
    assert fp8.executable is True
    assert fp8.changes == {"--quantization": "fp8"}
    assert (int4.executable, int4.changes) == (False, {"--quantization": "awq_marlin"})
    assert (int8.executable, int8.changes) == (False, {"--quantization": "compressed-tensors"})
    assert "with a GPTQ checkpoint use --quantization gptq_marlin instead" in int4.assumptions
    assert int4.estimated_impact["weight_memory_bytes"].low == pytest.approx(4.25 / 16 - 1, abs=1e-4)
    assert fp8.estimated_impact["weight_memory_bytes"].low == -0.5


def test_tgi_int8_is_on_the_fly_eetq() -> None:
    figures = scenario("tgi", "decode_latency")

    draft = make_plan("tgi", figures, gpu=H100, constraints=Constraints(max_quality_risk="low"))

    int8 = by_id(draft.recommendations, "quantization:int8")
    assert (int8.changes, int8.executable) == ({"--quantize": "eetq"}, True)
    assert "ttft_p99_s" not in int8.estimated_impact  # weight-only: prefill math stays 16-bit


def test_no_quantization_when_not_allowed() -> None:
    draft = make_plan("vllm", scenario("vllm", "kv_cache_pressure"), constraints=Constraints(allow_quantization=False))

    assert all(r.type != "quantization" for r in draft.recommendations)
    assert "quantization not offered: constraints.allow_quantization is false" in draft.notes


def test_fp8_is_not_offered_on_gpus_without_fp8() -> None:
    a100 = GpuSpec(name="A100-SXM4-80GB", memory_gib=80.0)

    draft = make_plan("vllm", scenario("vllm", "decode_latency"), gpu=a100)

    assert "quantization:fp8" not in {r.id for r in draft.recommendations}
    assert any(n.startswith("fp8 not offered: A100-SXM4-80GB cannot run it") for n in draft.notes)


def test_already_quantized_models_get_no_quantization() -> None:
    draft = make_plan("sglang", scenario("sglang", "decode_latency"), model=ModelSpec(quantization="awq"))

    assert all(r.type != "quantization" for r in draft.recommendations)
    assert "quantization not offered: the model is already served with awq" in draft.notes


def test_fp8_kv_capacity_is_exact_with_a_declared_dtype_and_wide_without() -> None:
    figures = scenario("vllm", "kv_cache_pressure")

    declared = by_id(make_plan("vllm", figures, model=LLAMA_8B).recommendations, "kv_cache:fp8-kv-cache")
    undeclared = by_id(make_plan("vllm", figures).recommendations, "kv_cache:fp8-kv-cache")

    capacity = declared.estimated_impact["kv_cache_capacity_tokens"]
    assert (capacity.low, capacity.high) == (1.0, 1.0)
    wide = undeclared.estimated_impact["kv_cache_capacity_tokens"]
    assert (wide.low, wide.high) == (1.0, 3.0)
    assert any("not declared" in a for a in undeclared.assumptions)
    assert declared.estimated_impact["preemptions_per_s"].low == -1.0


def test_fp8_kv_is_skipped_when_already_fp8() -> None:
    page = {**PAGES["vllm"], "cache_dtype": "fp8_e5m2"}
    figures = scenario("vllm", "kv_cache_pressure")

    draft = build_plan(detect_bottlenecks(figures).findings, page, engine="vllm", figures=figures)

    assert "kv_cache:fp8-kv-cache" not in {r.id for r in draft.recommendations}
    assert "FP8 KV cache not offered: the KV cache is already fp8_e5m2" in draft.notes


def test_queueing_estimate_follows_littles_law() -> None:
    rec = make_plan("vllm", scenario("vllm", "queueing")).recommendations[0]

    # running 16 + waiting 10 = 26 in the system; cap 1.25 x 26 rounded up to 8 = 40; batch 16 -> 26
    assert rec.changes == {"--max-num-seqs": 40}
    assert rec.estimated_impact["generation_tokens_per_s"].high == pytest.approx(26 / 16 - 1, abs=1e-4)
    assert rec.estimated_impact["queue_time_s"].low == -1.0
    assert "KV usage would grow to about 114% of the pool at the larger batch" in rec.assumptions
    assert rec.risk.stability == "high"


def test_cap_below_binding_is_not_raised_and_the_token_budget_takes_over() -> None:
    figures = scenario("vllm", "queueing")
    findings = detect_bottlenecks(figures).findings
    declared: dict[str, ConfigValue] = {"--max-num-seqs": 256, "--max-num-batched-tokens": 2048}

    draft = build_plan(findings, PAGES["vllm"], engine="vllm", figures=figures, engine_args=declared)

    assert "batching:raise-max-running" not in {r.id for r in draft.recommendations}
    assert any("16 running is below the cap of 256" in n for n in draft.notes)
    first = draft.recommendations[0]
    assert (first.id, first.changes, first.addresses) == (
        "batching:raise-token-budget",
        {"--max-num-batched-tokens": 4096},
        ["queueing"],
    )
    assert (first.estimated_impact["ttft_p99_s"].low, first.estimated_impact["itl_p99_s"].high) == (-0.5, 1.0)


def test_conflicting_changes_follow_the_objective() -> None:
    figures = healthy_figures(
        "vllm", **{k.replace(".", "__"): v for k, v in {**SCENARIOS["queueing"], "latency.itl_s.p99": 0.25}.items()}
    )
    a100 = GpuSpec(name="A100", memory_gib=80.0)
    at_cap: dict[str, ConfigValue] = {"max-num-seqs": 16}

    latency = make_plan("vllm", figures, gpu=a100, objective="latency", engine_args=at_cap)
    throughput = make_plan("vllm", figures, gpu=a100, objective="throughput", engine_args=at_cap)

    assert latency.recommendations[0].id == "batching:lower-batch-for-itl"
    assert "batching:raise-max-running" not in {r.id for r in latency.recommendations}
    assert any(n.startswith("batching:raise-max-running dropped: it also sets --max-num-seqs") for n in latency.notes)
    assert throughput.recommendations[0].id == "batching:raise-max-running"
    assert "batching:lower-batch-for-itl" not in {r.id for r in throughput.recommendations}


def test_the_most_severe_finding_is_addressed_first() -> None:
    figures = scenario("vllm", "decode_latency")
    figures.errors.error_rate = 0.5  # critical errors beat a high ITL

    draft = make_plan("vllm", figures)

    assert draft.recommendations[0].addresses == ["request_errors"]


def test_low_findings_are_noted_not_planned() -> None:
    low = Finding(
        type="kv_cache_pressure",
        severity="low",
        evidence={"load.kv_cache_usage": EvidenceItem(observed=0.85, threshold=0.8, comparison=">=")},
        description="",
        recommendation=["kv_cache"],
    )

    draft = build_plan([low], PAGES["vllm"], engine="vllm", figures=healthy_figures("vllm"))

    assert draft.recommendations == []
    assert draft.notes[0] == "kv_cache_pressure is only low severity: no change proposed for it"


def test_rationale_cites_the_evidence() -> None:
    rec = make_plan("vllm", scenario("vllm", "kv_cache_pressure")).recommendations[0]

    assert rec.rationale.startswith(
        "Addresses kv_cache_pressure (high: load.kv_cache_usage 0.97 >= 0.9, load.preemptions_per_s 0.05 >= 0.03)."
    )


def test_decode_batch_uses_the_fitted_step_time_when_history_varies() -> None:
    history = []
    for running in (8.0, 16.0, 32.0, 64.0):
        window = healthy_figures("vllm", load__requests_running=running)
        window.latency.itl_s.mean = 0.010 + 0.0005 * running
        history.append(window)
    figures = scenario("vllm", "decode_latency")
    figures.latency.itl_s.mean = 0.018  # 16 running: 10 ms + 16 x 0.5 ms
    findings = detect_bottlenecks(figures).findings

    rec = plan(findings, PAGES["vllm"], engine="vllm", figures=figures, history=history)[0]

    # crossed rung 0.2 s -> p99 target 0.18 s; as a mean: 0.18 x (0.018 / 0.25) = 12.96 ms
    # = 10 ms + 0.5 ms x batch -> batch 5.92, rounded down to 5
    assert rec.changes == {"--max-num-seqs": 5}
    assert any("fitted" in a for a in rec.assumptions)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown engine 'trtllm'"):
        build_plan([], {}, engine="trtllm")


def test_plan_lists_what_is_unknown() -> None:
    draft = make_plan("tgi", scenario("tgi", "decode_latency"))

    assert "unknown: gpu.memory_gib (declare it at registration for tighter estimates)" in draft.notes
    assert "unknown: model.params_b (declare it at registration for tighter estimates)" in draft.notes
