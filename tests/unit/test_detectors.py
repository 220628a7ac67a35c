"""Every detector threshold, for every engine: at the threshold, just below and just above."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from performance_agent.analysis.detectors import DETECTORS, detect_bottlenecks, summarize
from performance_agent.analysis.schemas import SEVERITY_RANK, BottleneckType, Finding, NotEvaluated
from performance_agent.analysis.thresholds import Thresholds, parse_thresholds
from tests.unit.test_detectors_support import ENGINES, healthy_figures, set_path

DEFAULTS = Thresholds()
NUDGE = 1e-6


@dataclass(frozen=True)
class Rung:
    """One threshold: where the metric lives, and the severity expected at, below and above it."""

    detector: BottleneckType
    path: str
    threshold: str
    at: str | None
    below: str | None
    above: str | None
    base: dict[str, Any] = field(default_factory=dict)
    engines: tuple[str, ...] = ENGINES


QUEUE_BASE = {"load.requests_waiting": 4.0, "latency.queue_s.mean": 0.5, "latency.ttft_s.mean": 0.6}
PREFILL_BASE = {"latency.queue_s.mean": 0.01, "latency.ttft_s.mean": 0.5}
IDLE_BASE = {
    "load.requests_running": 1.0,
    "throughput.generation_tokens_per_s": 50.0,
    "load.kv_cache_usage": 0.05,
}

RUNGS = [
    # kv_cache_pressure: vLLM and SGLang only; TGI has neither signal (tested separately)
    Rung("kv_cache_pressure", "load.kv_cache_usage", "kv_usage_low", "low", None, "low", engines=("vllm", "sglang")),
    Rung(
        "kv_cache_pressure",
        "load.kv_cache_usage",
        "kv_usage_medium",
        "medium",
        "low",
        "medium",
        engines=("vllm", "sglang"),
    ),
    Rung(
        "kv_cache_pressure",
        "load.kv_cache_usage",
        "kv_usage_high",
        "high",
        "medium",
        "high",
        engines=("vllm", "sglang"),
    ),
    Rung(
        "kv_cache_pressure",
        "load.preemptions_per_s",
        "preemptions_per_s_medium",
        "medium",
        None,
        "medium",
        engines=("vllm", "sglang"),
    ),
    Rung(
        "kv_cache_pressure",
        "load.preemptions_per_s",
        "preemptions_per_s_high",
        "high",
        "medium",
        "high",
        engines=("vllm", "sglang"),
    ),
    Rung(
        "kv_cache_pressure",
        "load.preemptions_per_s",
        "preemptions_per_s_critical",
        "critical",
        "high",
        "critical",
        engines=("vllm", "sglang"),
    ),
    # queueing
    Rung("queueing", "load.requests_waiting", "queue_waiting_requests", "medium", None, "medium", base=QUEUE_BASE),
    Rung(
        "queueing",
        "latency.queue_s.mean",
        "queue_time_s_high",
        "high",
        "medium",
        "high",
        base={**QUEUE_BASE, "latency.ttft_s.mean": 1.5},
    ),
    Rung(
        "queueing",
        "latency.queue_s.mean",
        "queue_time_s_critical",
        "critical",
        "high",
        "critical",
        base={**QUEUE_BASE, "latency.ttft_s.mean": 6.0},
    ),
    # prefill_latency (queue share is tiny in the base)
    Rung("prefill_latency", "latency.ttft_s.p99", "ttft_p99_s_medium", "medium", None, "medium", base=PREFILL_BASE),
    Rung("prefill_latency", "latency.ttft_s.p99", "ttft_p99_s_high", "high", "medium", "high", base=PREFILL_BASE),
    Rung(
        "prefill_latency",
        "latency.ttft_s.p99",
        "ttft_p99_s_critical",
        "critical",
        "high",
        "critical",
        base=PREFILL_BASE,
    ),
    # decode_latency
    Rung("decode_latency", "latency.itl_s.p99", "itl_p99_s_medium", "medium", None, "medium"),
    Rung("decode_latency", "latency.itl_s.p99", "itl_p99_s_high", "high", "medium", "high"),
    Rung("decode_latency", "latency.itl_s.p99", "itl_p99_s_critical", "critical", "high", "critical"),
    # underutilization: upper limits, so at and below fire, above does not
    Rung(
        "underutilization",
        "load.requests_running",
        "idle_max_running_requests",
        "medium",
        "medium",
        None,
        base=IDLE_BASE,
    ),
    Rung(
        "underutilization",
        "throughput.generation_tokens_per_s",
        "idle_max_generation_tokens_per_s",
        "medium",
        "medium",
        None,
        base=IDLE_BASE,
    ),
    Rung("underutilization", "load.kv_cache_usage", "idle_max_kv_usage", "medium", "medium", None, base=IDLE_BASE),
    Rung(
        "underutilization",
        "load.requests_running",
        "idle_running_requests_high",
        "high",
        "high",
        "medium",
        base=IDLE_BASE,
    ),
    # request_errors
    Rung("request_errors", "errors.error_rate", "error_rate_medium", "medium", None, "medium"),
    Rung("request_errors", "errors.error_rate", "error_rate_high", "high", "medium", "high"),
    Rung("request_errors", "errors.error_rate", "error_rate_critical", "critical", "high", "critical"),
]

CASES = [
    pytest.param(engine, rung, position, id=f"{engine}-{rung.threshold}-{position}")
    for rung in RUNGS
    for engine in rung.engines
    for position in ("at", "below", "above")
]


@pytest.mark.parametrize(("engine", "rung", "position"), CASES)
def test_threshold_boundaries(engine: str, rung: Rung, position: str) -> None:
    threshold = getattr(DEFAULTS, rung.threshold)
    value = {"at": threshold, "below": threshold * (1 - NUDGE), "above": threshold * (1 + NUDGE)}[position]
    figures = healthy_figures(engine)
    for path, base_value in rung.base.items():
        set_path(figures, path, base_value)
    set_path(figures, rung.path, value)

    outcome = DETECTORS[rung.detector](figures, DEFAULTS)

    expected = getattr(rung, position)
    if expected is None:
        assert outcome is None
        return
    assert isinstance(outcome, Finding)
    assert outcome.type == rung.detector
    assert outcome.severity == expected
    if position == "at" or expected == rung.at:
        evidence = outcome.evidence[rung.path]
        assert evidence.observed == pytest.approx(value)
        assert evidence.threshold == threshold


@pytest.mark.parametrize("engine", ENGINES)
def test_healthy_instance_has_nothing_above_low(engine: str) -> None:
    report = detect_bottlenecks(healthy_figures(engine))

    assert [f for f in report.findings if SEVERITY_RANK[f.severity] > SEVERITY_RANK["low"]] == []
    assert summarize(report).startswith("healthy")


def test_tgi_says_why_kv_pressure_is_not_evaluated() -> None:
    figures = healthy_figures("tgi", load__kv_cache_usage=0.99)

    report = detect_bottlenecks(figures)

    assert "kv_cache_pressure" not in {f.type for f in report.findings}
    [skipped] = [n for n in report.not_evaluated if n.detector == "kv_cache_pressure"]
    assert "TGI exposes no KV cache usage" in skipped.reason
    assert "no preemption metric" in skipped.reason
    assert "kv_cache_pressure" in summarize(report)


def test_tgi_reserved_token_proxy_still_proves_idleness() -> None:
    figures = healthy_figures(
        "tgi", load__requests_running=0.5, throughput__generation_tokens_per_s=10.0, load__kv_cache_usage=0.1
    )

    finding = DETECTORS["underutilization"](figures, DEFAULTS)

    assert isinstance(finding, Finding)
    assert finding.evidence["load.kv_cache_usage"].approximation == (
        "tgi_batch_current_max_tokens / tgi_batch_max_total_tokens"
    )


def test_kv_pressure_with_only_preemptions_says_what_was_not_observed() -> None:
    figures = healthy_figures("vllm", load__kv_cache_usage=None, load__preemptions_per_s=0.5)

    finding = DETECTORS["kv_cache_pressure"](figures, DEFAULTS)

    assert isinstance(finding, Finding)
    assert finding.severity == "high"
    assert set(finding.evidence) == {"load.preemptions_per_s"}
    assert "kv_cache_usage is not available" in finding.description


def test_combined_kv_signals_take_the_worse_severity() -> None:
    figures = healthy_figures("sglang", load__kv_cache_usage=0.99, load__preemptions_per_s=2.0)

    finding = DETECTORS["kv_cache_pressure"](figures, DEFAULTS)

    assert isinstance(finding, Finding)
    assert finding.severity == "critical"
    assert finding.evidence["load.kv_cache_usage"].threshold == DEFAULTS.kv_usage_high
    assert finding.recommendation == ["kv_cache", "quantization", "batching"]


@pytest.mark.parametrize("engine", ENGINES)
def test_queue_share_at_and_below_its_threshold(engine: str) -> None:
    at = healthy_figures(engine, load__requests_waiting=3.0, latency__queue_s__mean=0.25, latency__ttft_s__mean=0.5)
    below = healthy_figures(
        engine, load__requests_waiting=3.0, latency__queue_s__mean=0.2499, latency__ttft_s__mean=0.5
    )

    finding = DETECTORS["queueing"](at, DEFAULTS)
    assert isinstance(finding, Finding)
    assert finding.evidence["latency.queue_s.mean / latency.ttft_s.mean"].observed == 0.5
    assert DETECTORS["queueing"](below, DEFAULTS) is None


@pytest.mark.parametrize("engine", ENGINES)
def test_prefill_latency_yields_to_queueing_when_the_queue_explains_ttft(engine: str) -> None:
    figures = healthy_figures(
        engine,
        latency__ttft_s__p99=4.0,
        latency__ttft_s__mean=2.0,
        latency__queue_s__mean=1.0,
        load__requests_waiting=5.0,
    )

    report = detect_bottlenecks(figures)

    types = [f.type for f in report.findings]
    assert "queueing" in types
    assert "prefill_latency" not in types


@pytest.mark.parametrize("engine", ENGINES)
def test_prefill_latency_without_queue_time_uses_requests_waiting(engine: str) -> None:
    quiet = healthy_figures(engine, latency__ttft_s__p99=2.0, latency__queue_s__mean=None)
    busy = healthy_figures(engine, latency__ttft_s__p99=2.0, latency__queue_s__mean=None, load__requests_waiting=1.0)

    finding = DETECTORS["prefill_latency"](quiet, DEFAULTS)
    assert isinstance(finding, Finding)
    assert finding.evidence["load.requests_waiting"].comparison == "<"
    assert DETECTORS["prefill_latency"](busy, DEFAULTS) is None


def test_prefill_latency_cannot_rule_out_queueing_without_any_queue_signal() -> None:
    figures = healthy_figures(
        "sglang", latency__ttft_s__p99=2.0, latency__queue_s__mean=None, load__requests_waiting=None
    )

    outcome = DETECTORS["prefill_latency"](figures, DEFAULTS)

    assert isinstance(outcome, NotEvaluated)
    assert "queueing cannot be ruled out" in outcome.reason


@pytest.mark.parametrize("detector", ["prefill_latency", "decode_latency"])
def test_latency_percentiles_of_few_requests_are_not_judged(detector: BottleneckType) -> None:
    field_name = "ttft_s" if detector == "prefill_latency" else "itl_s"
    figures = healthy_figures("vllm")
    set_path(figures, f"latency.{field_name}.p99", 20.0)
    set_path(figures, f"latency.{field_name}.count", 9.0)

    outcome = DETECTORS[detector](figures, DEFAULTS)

    assert isinstance(outcome, NotEvaluated)
    assert "only 9 observations" in outcome.reason
    set_path(figures, f"latency.{field_name}.count", 10.0)
    assert isinstance(DETECTORS[detector](figures, DEFAULTS), Finding)


@pytest.mark.parametrize(
    ("detector", "path", "reason"),
    [
        ("queueing", "load.requests_waiting", "requests_waiting is not available"),
        ("prefill_latency", "latency.ttft_s.p99", "TTFT p99 is not available"),
        ("decode_latency", "latency.itl_s.p99", "inter-token latency p99 is not available"),
        ("underutilization", "throughput.generation_tokens_per_s", "generation_tokens_per_s not available"),
        ("underutilization", "load.requests_running", "requests_running not available"),
        ("request_errors", "errors.error_rate", "error_rate is not available"),
    ],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_missing_signal_gives_no_finding_and_a_reason(
    engine: str, detector: BottleneckType, path: str, reason: str
) -> None:
    # every detector would fire on these figures if its signal were present
    figures = healthy_figures(engine, **{key.replace(".", "__"): value for key, value in IDLE_BASE.items()})
    set_path(figures, "errors.error_rate", 0.5)
    set_path(figures, "latency.itl_s.p99", 1.0)
    set_path(figures, "latency.ttft_s.p99", 5.0)
    if detector == "queueing":
        set_path(figures, "load.requests_waiting", 3.0)
        set_path(figures, "latency.queue_s.mean", 0.1)
    assert DETECTORS[detector](figures, DEFAULTS) is not None
    set_path(figures, path, None)

    report = detect_bottlenecks(figures)

    assert detector not in {f.type for f in report.findings}
    reasons = {n.detector: n.reason for n in report.not_evaluated}
    assert reasons[detector].startswith(f"{engine}: ")
    assert reason in reasons[detector]


def test_vllm_without_both_kv_signals_is_not_evaluated() -> None:
    figures = healthy_figures("vllm", load__kv_cache_usage=None, load__preemptions_per_s=None)

    outcome = DETECTORS["kv_cache_pressure"](figures, DEFAULTS)

    assert isinstance(outcome, NotEvaluated)
    assert outcome.reason == (
        "vllm: kv_cache_usage is not available in this window; vllm: preemptions_per_s is not available in this window"
    )


def test_waiting_requests_rule_out_underutilization() -> None:
    figures = healthy_figures(
        "vllm", load__requests_running=1.0, throughput__generation_tokens_per_s=20.0, load__requests_waiting=2.0
    )

    assert DETECTORS["underutilization"](figures, DEFAULTS) is None


def test_findings_are_sorted_most_severe_first_and_summarized() -> None:
    figures = healthy_figures("vllm", errors__error_rate=0.3, latency__itl_s__p99=0.15)

    report = detect_bottlenecks(figures)

    assert [(f.type, f.severity) for f in report.findings] == [
        ("request_errors", "critical"),
        ("decode_latency", "medium"),
    ]
    assert summarize(report) == "2 bottlenecks: request_errors (critical), decode_latency (medium)"


def test_custom_thresholds_change_the_verdict() -> None:
    strict = parse_thresholds({"itl_p99_s_medium": 0.02})

    report = detect_bottlenecks(healthy_figures("sglang"), strict)

    [finding] = report.findings
    assert finding.type == "decode_latency"
    assert finding.evidence["latency.itl_s.p99"].threshold == 0.02


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kv_usage_medium": 1.5}, "Expected `float` <= 1"),
        ({"itl_p99_s_high": -1}, "Expected `float` > 0"),
        ({"error_rate_medium": 0.5}, "error_rate thresholds must not decrease"),
        ({"no_such_threshold": 1}, "Object contains unknown field `no_such_threshold`"),
    ],
)
def test_invalid_thresholds_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        parse_thresholds(overrides)
