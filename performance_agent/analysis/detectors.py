"""The six bottleneck detectors: pure functions from window figures to evidence-backed findings.

Each detector either returns a finding whose evidence shows the observed numbers and the
thresholds they crossed, returns nothing (healthy), or explains why it could not judge: a
signal the engine does not expose is never replaced by a guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.analysis.schemas import (
    SEVERITY_RANK,
    BottleneckType,
    DetectionReport,
    EvidenceItem,
    Finding,
    NotEvaluated,
    Severity,
    WindowFigures,
)
from performance_agent.analysis.thresholds import Thresholds
from performance_agent.engines.knobs import signal_gap

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = (
    "DETECTORS",
    "detect_bottlenecks",
    "detect_decode_latency",
    "detect_kv_cache_pressure",
    "detect_prefill_latency",
    "detect_queueing",
    "detect_request_errors",
    "detect_underutilization",
    "summarize",
)

Outcome = Finding | NotEvaluated | None
QUEUE_SHARE = "latency.queue_s.mean / latency.ttft_s.mean"


def _approximation(figures: WindowFigures, field: str) -> str | None:
    for item in figures.approximations:
        if item.field == field or item.field.endswith("." + field):
            return item.formula
    return None


def _tier(value: float, ladder: Sequence[tuple[float, Severity]]) -> tuple[Severity, float] | None:
    """The most severe (threshold, severity) rung that `value` reaches; ladder ordered most severe first."""
    for threshold, severity in ladder:
        if value >= threshold:
            return severity, threshold
    return None


def _most_severe(severities: Sequence[Severity]) -> Severity:
    return max(severities, key=lambda s: SEVERITY_RANK[s])


def _missing(figures: WindowFigures, signal: str, what: str) -> str:
    gap = signal_gap(figures.engine, signal)
    return f"{figures.engine}: {gap}" if gap else f"{figures.engine}: {what} is not available in this window"


def _queue_share(figures: WindowFigures) -> float | None:
    queue_mean = figures.latency.queue_s.mean
    ttft_mean = figures.latency.ttft_s.mean
    if queue_mean is None or ttft_mean is None or ttft_mean <= 0:
        return None
    return min(queue_mean / ttft_mean, 1.0)


def _too_few_requests(figures: WindowFigures, count: float | None, limits: Thresholds) -> str | None:
    if count is not None and count < limits.min_requests_for_latency:
        return (
            f"{figures.engine}: only {count:g} observations in the window; latency percentiles need at least "
            f"{limits.min_requests_for_latency}"
        )
    return None


def detect_kv_cache_pressure(figures: WindowFigures, limits: Thresholds) -> Outcome:
    """High KV usage and/or preemptions (vLLM) / retractions (SGLang): the pool is too small for the batch."""
    usage = figures.load.kv_cache_usage
    if signal_gap(figures.engine, "kv_cache_usage") is not None:
        usage = None  # a proxy of reserved tokens is not usage
    preemptions = figures.load.preemptions_per_s
    if signal_gap(figures.engine, "preemptions_per_s") is not None:
        preemptions = None
    if usage is None and preemptions is None:
        reasons = [
            _missing(figures, "kv_cache_usage", "kv_cache_usage"),
            _missing(figures, "preemptions_per_s", "preemptions_per_s"),
        ]
        return NotEvaluated(detector="kv_cache_pressure", reason="; ".join(reasons))
    evidence: dict[str, EvidenceItem] = {}
    severities: list[Severity] = []
    if usage is not None:
        reached = _tier(
            usage,
            ((limits.kv_usage_high, "high"), (limits.kv_usage_medium, "medium"), (limits.kv_usage_low, "low")),
        )
        if reached:
            severities.append(reached[0])
            evidence["load.kv_cache_usage"] = EvidenceItem(
                observed=usage,
                threshold=reached[1],
                comparison=">=",
                approximation=_approximation(figures, "kv_cache_usage"),
            )
    if preemptions is not None:
        reached = _tier(
            preemptions,
            (
                (limits.preemptions_per_s_critical, "critical"),
                (limits.preemptions_per_s_high, "high"),
                (limits.preemptions_per_s_medium, "medium"),
            ),
        )
        if reached:
            severities.append(reached[0])
            evidence["load.preemptions_per_s"] = EvidenceItem(
                observed=preemptions, threshold=reached[1], comparison=">="
            )
    if not severities:
        return None
    parts = []
    if usage is not None:
        parts.append(f"KV cache {usage:.0%} used")
    if preemptions is not None:
        parts.append(f"{preemptions:.3g} preemptions/retractions per second")
    missing = [] if usage is not None else [_missing(figures, "kv_cache_usage", "kv_cache_usage")]
    missing += [] if preemptions is not None else [_missing(figures, "preemptions_per_s", "preemptions_per_s")]
    description = (
        f"{' and '.join(parts)}: the KV pool is close to full, so new sequences wait for blocks and running "
        "ones are evicted and recomputed."
    )
    if missing:
        description += " Not observed: " + "; ".join(missing) + "."
    return Finding(
        type="kv_cache_pressure",
        severity=_most_severe(severities),
        evidence=evidence,
        description=description,
        recommendation=["kv_cache", "quantization", "batching"],
    )


def detect_queueing(figures: WindowFigures, limits: Thresholds) -> Outcome:
    """Requests waiting and queue time dominating TTFT: the instance is short of capacity."""
    waiting = figures.load.requests_waiting
    if waiting is None:
        return NotEvaluated(detector="queueing", reason=_missing(figures, "requests_waiting", "requests_waiting"))
    if waiting < limits.queue_waiting_requests:
        return None
    share = _queue_share(figures)
    if share is not None and share < limits.queue_share_of_ttft:
        return None
    evidence = {
        "load.requests_waiting": EvidenceItem(
            observed=waiting, threshold=limits.queue_waiting_requests, comparison=">="
        )
    }
    if share is not None:
        evidence[QUEUE_SHARE] = EvidenceItem(
            observed=share,
            threshold=limits.queue_share_of_ttft,
            comparison=">=",
            approximation=_approximation(figures, "ttft_s"),
        )
    queue_mean = figures.latency.queue_s.mean
    severity: Severity = "medium"
    if queue_mean is not None:
        reached = _tier(queue_mean, ((limits.queue_time_s_critical, "critical"), (limits.queue_time_s_high, "high")))
        if reached:
            severity = reached[0]
            evidence["latency.queue_s.mean"] = EvidenceItem(observed=queue_mean, threshold=reached[1], comparison=">=")
    description = f"{waiting:.3g} requests waiting on average"
    if share is not None and queue_mean is not None:
        description += f"; the queue accounts for {share:.0%} of TTFT ({queue_mean:.3g} s mean wait)"
    else:
        description += "; queue time is not available, so its share of TTFT could not be checked"
    description += ". The instance is short of capacity: more concurrent sequences, more KV room, or more replicas."
    return Finding(
        type="queueing",
        severity=severity,
        evidence=evidence,
        description=description,
        recommendation=["batching", "kv_cache", "quantization"],
    )


def detect_prefill_latency(figures: WindowFigures, limits: Thresholds) -> Outcome:
    """TTFT high although the queue does not explain it: prompt processing itself is slow."""
    ttft = figures.latency.ttft_s
    if ttft.p99 is None:
        return NotEvaluated(detector="prefill_latency", reason=_missing(figures, "ttft_s", "TTFT p99"))
    too_few = _too_few_requests(figures, ttft.count, limits)
    if too_few:
        return NotEvaluated(detector="prefill_latency", reason=too_few)
    reached = _tier(
        ttft.p99,
        (
            (limits.ttft_p99_s_critical, "critical"),
            (limits.ttft_p99_s_high, "high"),
            (limits.ttft_p99_s_medium, "medium"),
        ),
    )
    if reached is None:
        return None
    evidence = {
        "latency.ttft_s.p99": EvidenceItem(
            observed=ttft.p99, threshold=reached[1], comparison=">=", approximation=_approximation(figures, "ttft_s")
        )
    }
    share = _queue_share(figures)
    if share is not None:
        if share >= limits.queue_share_of_ttft:
            return None  # the queue explains TTFT: that is the queueing detector's finding
        evidence[QUEUE_SHARE] = EvidenceItem(observed=share, threshold=limits.queue_share_of_ttft, comparison="<")
    else:
        waiting = figures.load.requests_waiting
        if waiting is None:
            return NotEvaluated(
                detector="prefill_latency",
                reason=f"{figures.engine}: TTFT p99 is {ttft.p99:.3g} s but neither queue time nor requests "
                "waiting is available, so queueing cannot be ruled out",
            )
        if waiting >= limits.queue_waiting_requests:
            return None
        evidence["load.requests_waiting"] = EvidenceItem(
            observed=waiting, threshold=limits.queue_waiting_requests, comparison="<"
        )
    prefill_note = ""
    if ttft.mean is not None and figures.latency.queue_s.mean is not None:
        prefill_note = f" (mean prefill after queueing ~{max(ttft.mean - figures.latency.queue_s.mean, 0.0):.3g} s)"
    return Finding(
        type="prefill_latency",
        severity=reached[0],
        evidence=evidence,
        description=(
            f"TTFT p99 is {ttft.p99:.3g} s{prefill_note} while the queue is not the cause: long prompts, "
            "a small prefill token budget or chunked-prefill settings slow prompt processing."
        ),
        recommendation=["batching", "kv_cache"],
    )


def detect_decode_latency(figures: WindowFigures, limits: Thresholds) -> Outcome:
    """Inter-token latency high: the decode batch is too large (or the model too slow) for the latency target."""
    itl = figures.latency.itl_s
    if itl.p99 is None:
        return NotEvaluated(detector="decode_latency", reason=_missing(figures, "itl_s", "inter-token latency p99"))
    too_few = _too_few_requests(figures, itl.count, limits)
    if too_few:
        return NotEvaluated(detector="decode_latency", reason=too_few)
    reached = _tier(
        itl.p99,
        (
            (limits.itl_p99_s_critical, "critical"),
            (limits.itl_p99_s_high, "high"),
            (limits.itl_p99_s_medium, "medium"),
        ),
    )
    if reached is None:
        return None
    running = figures.load.requests_running
    batch = f" with {running:.3g} requests running on average" if running is not None else ""
    return Finding(
        type="decode_latency",
        severity=reached[0],
        evidence={
            "latency.itl_s.p99": EvidenceItem(
                observed=itl.p99, threshold=reached[1], comparison=">=", approximation=_approximation(figures, "itl_s")
            )
        },
        description=(
            f"Inter-token latency p99 is {itl.p99 * 1000:.0f} ms{batch}: each decode step serves a batch too "
            "large (or weights too heavy to read) for the latency target."
        ),
        recommendation=["batching", "quantization"],
    )


def detect_underutilization(figures: WindowFigures, limits: Thresholds) -> Outcome:
    """Few running requests, little KV in use and low throughput: the GPU is paid for and idle."""
    running = figures.load.requests_running
    generation = figures.throughput.generation_tokens_per_s
    if running is None or generation is None:
        pairs = (("requests_running", running), ("generation_tokens_per_s", generation))
        missing = [name for name, value in pairs if value is None]
        return NotEvaluated(
            detector="underutilization",
            reason=f"{figures.engine}: {' and '.join(missing)} not available in this window (rates need two scrapes)",
        )
    waiting = figures.load.requests_waiting
    if waiting is not None and waiting >= limits.queue_waiting_requests:
        return None
    if running > limits.idle_max_running_requests or generation > limits.idle_max_generation_tokens_per_s:
        return None
    evidence = {
        "load.requests_running": EvidenceItem(
            observed=running, threshold=limits.idle_max_running_requests, comparison="<="
        ),
        "throughput.generation_tokens_per_s": EvidenceItem(
            observed=generation, threshold=limits.idle_max_generation_tokens_per_s, comparison="<="
        ),
    }
    usage = figures.load.kv_cache_usage
    usage_note = ""
    if usage is not None:
        # A reserved-token proxy (TGI) is an upper bound of usage, so "proxy low" still proves "usage low".
        if usage > limits.idle_max_kv_usage:
            return None
        evidence["load.kv_cache_usage"] = EvidenceItem(
            observed=usage,
            threshold=limits.idle_max_kv_usage,
            comparison="<=",
            approximation=_approximation(figures, "kv_cache_usage"),
        )
        usage_note = f", KV cache {usage:.0%} used"
    else:
        usage_note = " (KV usage not available)"
    severity: Severity = "medium"
    if running <= limits.idle_running_requests_high:
        severity = "high"
        evidence["load.requests_running"] = EvidenceItem(
            observed=running, threshold=limits.idle_running_requests_high, comparison="<="
        )
    return Finding(
        type="underutilization",
        severity=severity,
        evidence=evidence,
        description=(
            f"{running:.3g} requests running on average, {generation:.3g} generated tokens/s{usage_note}: "
            "the GPU is mostly idle; a smaller memory footprint or fewer/smaller GPUs would serve this load."
        ),
        recommendation=["kv_cache", "quantization"],
    )


def detect_request_errors(figures: WindowFigures, limits: Thresholds) -> Outcome:
    """Aborted or failed requests above the tolerated fraction."""
    rate = figures.errors.error_rate
    if rate is None:
        return NotEvaluated(detector="request_errors", reason=_missing(figures, "error_rate", "error_rate"))
    reached = _tier(
        rate,
        (
            (limits.error_rate_critical, "critical"),
            (limits.error_rate_high, "high"),
            (limits.error_rate_medium, "medium"),
        ),
    )
    if reached is None:
        return None
    failed = figures.errors.requests_failed_per_s
    per_second = f" ({failed:.3g} failed requests/s)" if failed is not None else ""
    return Finding(
        type="request_errors",
        severity=reached[0],
        evidence={
            "errors.error_rate": EvidenceItem(
                observed=rate,
                threshold=reached[1],
                comparison=">=",
                approximation=_approximation(figures, "error_rate"),
            )
        },
        description=(
            f"{rate:.1%} of requests failed or were aborted{per_second}. Memory exhaustion and admission limits "
            "are tunable causes; client aborts and invalid requests are not."
        ),
        recommendation=["kv_cache", "batching"],
    )


DETECTORS: dict[BottleneckType, Callable[[WindowFigures, Thresholds], Outcome]] = {
    "kv_cache_pressure": detect_kv_cache_pressure,
    "queueing": detect_queueing,
    "prefill_latency": detect_prefill_latency,
    "decode_latency": detect_decode_latency,
    "underutilization": detect_underutilization,
    "request_errors": detect_request_errors,
}


def detect_bottlenecks(figures: WindowFigures, thresholds: Thresholds | None = None) -> DetectionReport:
    """Run every detector; findings come most severe first."""
    limits = thresholds or Thresholds()
    report = DetectionReport()
    for detector in DETECTORS.values():
        outcome = detector(figures, limits)
        if isinstance(outcome, Finding):
            report.findings.append(outcome)
        elif isinstance(outcome, NotEvaluated):
            report.not_evaluated.append(outcome)
    report.findings.sort(key=lambda f: -SEVERITY_RANK[f.severity])
    return report


def summarize(report: DetectionReport) -> str:
    """One line a human can read: the verdict, then what could not be judged."""
    significant = [f for f in report.findings if SEVERITY_RANK[f.severity] > SEVERITY_RANK["low"]]
    if significant:
        listed = ", ".join(f"{f.type} ({f.severity})" for f in significant)
        verdict = f"{len(significant)} bottleneck{'s' if len(significant) > 1 else ''}: {listed}"
    else:
        verdict = "healthy: no bottleneck above low severity"
    if report.not_evaluated:
        verdict += "; not evaluated: " + ", ".join(item.detector for item in report.not_evaluated)
    return verdict
