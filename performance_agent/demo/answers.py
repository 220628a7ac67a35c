"""Reading the agent's answers: one-line summaries, and the checks that the story's expectations hold.

Pure functions over decoded JSON (no HTTP). A check that fails raises `StepFailed` naming what
was expected and what came back, so the demo stops there instead of narrating success.
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "StepFailed",
    "analysis_line",
    "choose_recommendation",
    "evidence_text",
    "failed_windows",
    "finding_of",
    "progress_text",
    "recommendation_line",
    "require_status",
    "snapshot_line",
    "window_lines",
)

Json = dict[str, Any]
NOTABLE = ("medium", "high", "critical")


class StepFailed(Exception):
    """An answer the story did not expect; the message names the request or check and what came back."""


def _number(value: object, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}g}"


def _seconds(value: object) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.3g} s"


def _percent(value: object) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value * 100:.0f}%"


def snapshot_line(snapshot: Json) -> str:
    """What one scrape said about a server: version, load, KV usage and latency."""
    load, latency = snapshot.get("load") or {}, snapshot.get("latency") or {}
    ttft = (latency.get("ttft_s") or {}).get("p99")
    itl = (latency.get("itl_s") or {}).get("p99")
    version = f" {snapshot['engine_version']}" if snapshot.get("engine_version") else ""
    return (
        f"{snapshot.get('engine')}{version}: "
        f"{_number(load.get('requests_running'))} running, {_number(load.get('requests_waiting'))} waiting, "
        f"KV cache {_percent(load.get('kv_cache_usage'))}, TTFT p99 {_seconds(ttft)}, ITL p99 {_seconds(itl)}"
    )


def evidence_text(finding: Json) -> str:
    """`metric observed >= threshold` for each number behind a finding."""
    parts = []
    for metric, item in sorted((finding.get("evidence") or {}).items()):
        parts.append(
            f"{metric} {_number(item.get('observed'))} {item.get('comparison')} {_number(item.get('threshold'))}"
        )
    return ", ".join(parts)


def analysis_line(report: Json) -> str:
    return str(report.get("summary") or "no summary")


def finding_of(report: Json, bottleneck: str) -> Json | None:
    """The report's finding of that type above `low` severity, if any."""
    for finding in report.get("bottlenecks") or []:
        if finding.get("type") == bottleneck and finding.get("severity") in NOTABLE:
            found: Json = finding
            return found
    return None


def recommendation_line(recommendation: Json) -> str:
    changes = ", ".join(f"{flag} {value}" for flag, value in (recommendation.get("changes") or {}).items())
    env = ", ".join(f"{name}={value}" for name, value in (recommendation.get("env") or {}).items())
    what = "; ".join(part for part in (changes, env) if part) or "no flag change"
    kind = "executable" if recommendation.get("executable") else "advice only"
    return (
        f"{recommendation.get('title')}  [{what}; {kind}; addresses {', '.join(recommendation.get('addresses') or [])}]"
    )


def choose_recommendation(plan: Json, bottleneck: str) -> Json:
    """The plan's first executable recommendation that addresses `bottleneck` (what a rollout can apply)."""
    for recommendation in plan.get("recommendations") or []:
        if recommendation.get("executable") and bottleneck in (recommendation.get("addresses") or []):
            chosen: Json = recommendation
            return chosen
    offered = [str(r.get("id")) for r in plan.get("recommendations") or []]
    raise StepFailed(
        f"the plan has no executable recommendation addressing {bottleneck} (offered: {', '.join(offered) or 'none'})"
    )


def require_status(workflow: Json, expected: str) -> None:
    if workflow.get("status") != expected:
        raise StepFailed(
            f"workflow {workflow.get('workflow_id')} is {workflow.get('status')!r}, expected {expected!r}"
            f" (reason: {workflow.get('status_reason') or 'none given'})"
        )


def progress_text(workflow: Json, elapsed_s: float) -> str:
    """`stage 2/3 (50%, 2 of 4 changed) monitoring, windows: 2 pass, 0 fail` and the time so far."""
    stages = workflow.get("stages") or []
    windows = workflow.get("windows") or []
    counts = {verdict: sum(1 for w in windows if w.get("verdict") == verdict) for verdict in ("pass", "fail")}
    inconclusive = len(windows) - counts["pass"] - counts["fail"]
    total = len(workflow.get("instance_ids") or [])
    bar_width = 10
    done = round(bar_width * int(workflow.get("changed_count") or 0) / total) if total else 0
    bar = "#" * done + "-" * (bar_width - done)
    return (
        f"[{bar}] stage {int(workflow.get('stage_index') or 0) + 1}/{len(stages)} ({workflow.get('percent')}%, "
        f"{workflow.get('changed_count')} of {total} changed) {workflow.get('status')}; windows: "
        f"{counts['pass']} pass, {counts['fail']} fail, {inconclusive} inconclusive; {elapsed_s:.1f} s"
    )


def failed_windows(workflow: Json) -> list[Json]:
    return [window for window in workflow.get("windows") or [] if window.get("verdict") == "fail"]


def _edge_line(edge: Json) -> str:
    """One table of the judge: requests above a bucket edge in each cohort (or a count test's totals)."""
    where = f"above {_number(edge.get('edge'))} s: " if edge.get("edge") is not None else ""
    canary = f"canary {_number(edge.get('canary_above'))}/{_number(edge.get('canary_total'))}"
    reference = ""
    if edge.get("reference_above") is not None:
        reference = f" vs reference {_number(edge.get('reference_above'))}/{_number(edge.get('reference_total'))}"
    bound = (
        f"margin {_number(edge.get('margin'))}"
        if edge.get("margin") is not None
        else f"allowed {_percent(edge.get('tolerated_share'))}"
    )
    return f"{where}{canary}{reference} ({bound}), evidence {_number(edge.get('evidence'))}"


def _metric_lines(metric: Json) -> list[str]:
    """A judged metric: its guardrail, running evidence against the threshold, and its strongest edge."""
    verdict = "CROSSED" if metric.get("exceeded") else "ok"
    line = (
        f"{metric.get('metric')} ({metric.get('guardrail')} {_number(metric.get('tolerance'))}):"
        f" evidence {_number(metric.get('evidence'))} of threshold {_number(metric.get('threshold'))} {verdict}"
    )
    edges = metric.get("edges") or []
    strongest = max(edges, key=lambda edge: float(edge.get("evidence") or 0.0), default=None)
    return [line] if strongest is None else [line, f"  {_edge_line(strongest)}"]


def window_lines(window: Json) -> list[str]:
    """A health window as the evidence a reviewer needs: verdict, reasons, then each metric that crossed."""
    canary = window.get("canary") or {}
    reference = window.get("control") or {}
    lines = [
        f"window {window.get('seq')} (stage {int(window.get('stage_index') or 0) + 1}): {window.get('verdict')}"
        f" vs {window.get('reference')}; canary served {_number(canary.get('requests'))} requests"
        + (f", control {_number(reference.get('requests'))}" if reference else ""),
    ]
    lines += [f"  reason: {reason}" for reason in window.get("reasons") or []]
    evidence = window.get("evidence") or {}
    for metric in evidence.get("metrics") or []:
        if metric.get("exceeded"):
            lines += [f"  {text}" for text in _metric_lines(metric)]
    return lines
