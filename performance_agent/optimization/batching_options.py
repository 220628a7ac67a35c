"""Batching options: concurrent sequences, per-step token budget, chunked prefill, admission limits.

Batch sizes come from the observed window (Little's law: requests in the system = arrival
rate x time in system, i.e. running + waiting), not from a table of good values.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from performance_agent.engines.knobs import knob
from performance_agent.engines.knobs_defaults import engine_default
from performance_agent.optimization.context import round_up
from performance_agent.optimization.impact import Estimate, batch_change
from performance_agent.optimization.schemas import Risk, RiskLevel

if TYPE_CHECKING:
    from performance_agent.optimization.context import Candidate, PlanContext

__all__ = ("batching_options",)

HEADROOM = 1.25  # capacity above the observed demand, so a burst does not queue at once
CAP_BINDING_SHARE = 0.9  # running at >= 90% of the cap means the cap is what stops admission
MAX_TOKEN_BUDGET = 65536


def _raise_concurrency(ctx: PlanContext) -> Candidate | None:
    if "queueing" not in ctx.findings or ctx.figures is None:
        return None
    flag = ctx.flag("max_running_requests")
    if flag is None:
        ctx.notes.append(
            f"{ctx.engine} has no cap on running sequences to raise; its batch grows with KV room "
            "(see the KV and quantization options)"
        )
        return None
    load = ctx.figures.load
    running, waiting = load.requests_running, load.requests_waiting
    if not running or waiting is None:
        ctx.notes.append(f"{flag} not raised: requests running/waiting unavailable")
        return None
    cap = ctx.number("max_running_requests")
    if cap is not None and running < CAP_BINDING_SHARE * cap:
        ctx.notes.append(
            f"{flag} not raised: {running:.3g} running is below the cap of {cap:g}, so the cap is not what "
            "keeps requests waiting"
        )
        return None
    demand = running + waiting  # Little's law: L = lambda x W over the whole system
    new_cap = round_up(HEADROOM * max(demand, cap or 0.0), 8)
    new_batch = min(float(new_cap), demand)
    effects = batch_change(running, new_batch, ctx.step_fit)
    estimated = {
        "generation_tokens_per_s": effects["throughput"],
        "itl_p99_s": effects["itl"],
        "queue_time_s": Estimate(
            -min(1.0, (new_batch - running) / waiting) if waiting else 0.0,
            0.0,
            ["queue time falls as the waiting requests are admitted, unless KV room stops them first"],
        ),
    }
    assumptions = [f"demand {demand:.3g} requests in the system (running {running:.3g} + waiting {waiting:.3g})"]
    stability: RiskLevel = "medium"
    if load.kv_cache_usage is not None:
        needed = load.kv_cache_usage * new_batch / running
        assumptions.append(f"KV usage would grow to about {needed:.0%} of the pool at the larger batch")
        if needed > 1:
            stability = "high"
    else:
        assumptions.append("KV usage unknown: the larger batch may not fit and then preempts")
    return ctx.build(
        slug="raise-max-running",
        kind="batching",
        title=f"Allow more concurrent sequences ({flag} {f'{cap:g}' if cap is not None else 'unknown'} -> {new_cap})",
        addresses=ctx.present(["queueing", "request_errors"] if ctx.engine != "tgi" else ["queueing"]),
        because="Requests wait while the running batch sits at its cap; a larger cap admits them.",
        changes={flag: new_cap},
        estimated=estimated,
        assumptions=assumptions,
        risk=Risk(quality="low", stability=stability, notes=["a larger batch raises inter-token latency"]),
        fit={"throughput": 2, "balanced": 1, "latency": 1},
    )


def _lower_batch_for_decode(ctx: PlanContext) -> Candidate | None:
    finding = ctx.findings.get("decode_latency")
    if finding is None or ctx.figures is None:
        return None
    evidence = finding.evidence.get("latency.itl_s.p99")
    running = ctx.figures.load.requests_running
    if evidence is None or not running or running <= 1:
        ctx.notes.append("batch not lowered for decode latency: the running batch is unknown or already 1")
        return None
    target = evidence.threshold * 0.9
    fit = ctx.step_fit
    if fit is not None and fit.per_request_s > 0:
        # the fit is over mean ITL: scale the p99 target by the observed tail ratio (mean / p99)
        tail_ratio = (ctx.figures.latency.itl_s.mean or evidence.observed) / evidence.observed
        new_batch = (target * tail_ratio - fit.base_s) / fit.per_request_s
    else:
        new_batch = running * target / evidence.observed
    new_batch = max(1.0, math.floor(new_batch))
    if new_batch >= running:
        ctx.notes.append("batch not lowered: the fitted step time says a smaller batch would not reach the target")
        return None
    effects = batch_change(running, new_batch, fit)
    estimated = {"itl_p99_s": effects["itl"], "generation_tokens_per_s": effects["throughput"]}
    assumptions = [f"target ITL p99 {target * 1000:.0f} ms (90% of the crossed threshold)"]
    if ctx.engine == "tgi":
        flag = knob("tgi", "kv_pool_tokens")
        total = ctx.number("kv_pool_tokens")
        if flag is None or flag.flag is None or total is None:
            ctx.notes.append("TGI batch not lowered: current --max-batch-total-tokens unknown")
            return None
        new_value = int(total * new_batch / running)
        changes = {flag.flag: new_value}
        title = f"Cap the batch's token slots (--max-batch-total-tokens {total:g} -> {new_value})"
        assumptions.append("token slots per request stay as observed, so slots scale with the batch")
    else:
        cap_flag = ctx.flag("max_running_requests")
        if cap_flag is None:
            return None
        new_value = int(new_batch)
        changes = {cap_flag: new_value}
        title = f"Cap concurrent sequences for lower inter-token latency ({cap_flag} -> {new_value})"
    return ctx.build(
        slug="lower-batch-for-itl",
        kind="batching",
        title=title,
        addresses=["decode_latency"],
        because=f"{running:.3g} sequences share each decode step; fewer per step make each step shorter.",
        changes=changes,
        estimated=estimated,
        assumptions=assumptions,
        risk=Risk(
            quality="low",
            stability="medium",
            notes=["less capacity: requests queue sooner when load rises (watch queue time after the change)"],
        ),
        fit={"throughput": 0, "balanced": 1, "latency": 2},
    )


def _prompt_length(ctx: PlanContext) -> float | None:
    throughput = ctx.figures.throughput if ctx.figures else None
    if throughput is None or not throughput.requests_per_s or throughput.prompt_tokens_per_s is None:
        return None
    return throughput.prompt_tokens_per_s / throughput.requests_per_s


def _admission_bound_by_budget(ctx: PlanContext) -> bool:
    """Requests wait although neither the sequence cap nor KV room is reached: the per-step budget admits them."""
    cap = ctx.number("max_running_requests")
    running = ctx.figures.load.requests_running if ctx.figures else None
    return (
        "queueing" in ctx.findings
        and ctx.kv_limited() is False
        and cap is not None
        and running is not None
        and running < CAP_BINDING_SHARE * cap
    )


def _raise_token_budget(ctx: PlanContext) -> Candidate | None:
    by_budget = _admission_bound_by_budget(ctx)
    if "prefill_latency" not in ctx.findings and not by_budget:
        return None
    entry = knob(ctx.engine, "batch_token_budget")
    if entry is None or entry.flag is None:
        return None
    current = ctx.number("batch_token_budget")
    if current is not None and current <= 0:
        ctx.notes.append(f"token budget not raised: {entry.flag} {current:g} disables chunking")
        return None
    assumptions: list[str] = []
    prompt = _prompt_length(ctx)
    if current is not None:
        new = int(min(current * 2, MAX_TOKEN_BUDGET))
        low_ratio = high_ratio = current / new
    else:
        floor = 2 * max(entry.documented_defaults or (8192,))
        wanted = 2 * prompt if prompt else 0.0
        new = int(min(max(floor, 2 ** math.ceil(math.log2(wanted)) if wanted > 1 else floor), MAX_TOKEN_BUDGET))
        smallest = min(entry.documented_defaults or (2048,))
        low_ratio, high_ratio = smallest / new, max(entry.documented_defaults or (8192,)) / new
        assumptions.append(
            f"current {entry.flag} unknown: assumed to be one of the engine's documented defaults "
            f"({', '.join(str(v) for v in entry.documented_defaults)})"
        )
    if current is not None and new <= current:
        ctx.notes.append(f"token budget not raised: {entry.flag} is already {current:g}")
        return None
    if prompt is not None:
        assumptions.append(f"mean prompt {prompt:.0f} tokens; prompts longer than the budget prefill in chunks")
    return ctx.build(
        slug="raise-token-budget",
        kind="batching",
        title=f"Prefill more tokens per step ({entry.flag} -> {new})",
        addresses=ctx.present(["prefill_latency", "queueing"] if by_budget else ["prefill_latency"]),
        because=(
            "Long prompts are cut into budget-sized chunks, one per step; a larger budget needs fewer steps"
            + (" and admits waiting prompts sooner." if by_budget else ".")
        ),
        changes={entry.flag: new},
        estimated={
            "ttft_p99_s": Estimate(
                low_ratio - 1,
                0.0,
                [
                    "between per-step overhead dominating (TTFT follows the number of chunks) and pure compute "
                    "(the same work in fewer steps)"
                ],
            ),
            "itl_p99_s": Estimate(
                0.0,
                1 / high_ratio - 1 if current is None else 1 / low_ratio - 1,
                ["worst case: a decode step shares the GPU with a full prefill chunk"],
            ),
        },
        assumptions=assumptions,
        risk=Risk(
            quality="low",
            stability="medium",
            notes=["larger steps need more activation memory and lengthen decode stalls behind prefills"],
        ),
        fit={"throughput": 1, "balanced": 1, "latency": 2},
    )


def _enable_chunked_prefill(ctx: PlanContext) -> Candidate | None:
    if "decode_latency" not in ctx.findings:
        return None
    changes: dict[str, str | int | float | bool | None]
    if ctx.engine == "vllm":
        if ctx.value("chunked_prefill") is not False:
            return None
        changes = {"--enable-chunked-prefill": True}
    elif ctx.engine == "sglang":
        if ctx.number("batch_token_budget") != -1:
            return None
        # the size SGLang itself picks for this GPU; 4096 is its own choice when memory is unknown
        size = engine_default("sglang", "batch_token_budget", None, None, ctx.gpu_memory_gib)
        changes = {"--chunked-prefill-size": size if isinstance(size, int) else 4096}
    else:
        return None
    itl = ctx.figures.latency.itl_s if ctx.figures else None
    estimated: dict[str, Estimate] = {}
    if itl is not None and itl.mean and itl.p99 and itl.p99 > itl.mean:
        estimated["itl_p99_s"] = Estimate(
            -(1 - itl.mean / itl.p99),
            0.0,
            ["at best the ITL tail (p99 over mean) was prefill stalls and shrinks to the mean"],
        )
    return ctx.build(
        slug="enable-chunked-prefill",
        kind="batching",
        title="Chunk long prefills so decodes keep running",
        addresses=["decode_latency"],
        because="Without chunking a long prompt occupies whole steps and every running sequence waits for it.",
        changes=changes,
        estimated=estimated,
        risk=Risk(quality="low", stability="low", notes=["long prompts take a few more steps to prefill"]),
        fit={"throughput": 1, "balanced": 2, "latency": 2},
    )


def _admission_headroom(ctx: PlanContext) -> Candidate | None:
    """TGI rejects requests beyond --max-concurrent-requests (HTTP 429, err="overloaded")."""
    if ctx.engine != "tgi" or "request_errors" not in ctx.findings:
        return None
    current = ctx.number("max_concurrent_requests")
    entry = knob("tgi", "max_concurrent_requests")
    if current is None or entry is None or entry.flag is None:
        return None
    new = int(current * 2)
    return ctx.build(
        slug="raise-max-concurrent-requests",
        kind="batching",
        title=f"Queue instead of rejecting ({entry.flag} {current:g} -> {new})",
        addresses=["request_errors"],
        because="Beyond the concurrency limit TGI rejects requests as overloaded instead of queueing them.",
        changes={entry.flag: new},
        estimated={
            "error_rate": Estimate(
                -1.0,
                0.0,
                ['failures fall in so far as they are err="overloaded" rejections (per-reason split not kept)'],
            ),
            "queue_time_s": Estimate(0.0, 1.0, ["admitted requests wait in the queue instead of failing"]),
        },
        risk=Risk(quality="low", stability="medium", notes=["more requests wait when the batch is full"]),
        fit={"throughput": 1, "balanced": 1, "latency": 1},
    )


def _tgi_admit_sooner(ctx: PlanContext) -> Candidate | None:
    """TGI holds waiting requests back for --max-waiting-tokens decode steps when there is room for them."""
    if ctx.engine != "tgi" or "queueing" not in ctx.findings or ctx.kv_limited() is True:
        return None
    entry = knob("tgi", "max_waiting_tokens")
    current = ctx.number("max_waiting_tokens")
    if entry is None or entry.flag is None or current is None or current < 2:
        return None
    new = int(current // 2)
    return ctx.build(
        slug="admit-waiting-sooner",
        kind="batching",
        title=f"Admit waiting requests sooner ({entry.flag} {current:g} -> {new})",
        addresses=["queueing"],
        because=(
            "The batch's reserved tokens are below the KV limit, so requests wait for the scheduler rather than "
            "for memory; TGI forces them in only after this many decode steps."
        ),
        changes={entry.flag: new},
        estimated={
            "queue_time_s": Estimate(
                new / current - 1, 0.0, ["at best the wait is the forced-admission delay, which halves"]
            ),
            "itl_p99_s": Estimate(0.0, current / new - 1, ["worst case: twice as many decode pauses for prefill"]),
        },
        risk=Risk(quality="low", stability="low", notes=["decodes pause more often to prefill newcomers"]),
        fit={"throughput": 1, "balanced": 1, "latency": 1},
    )


def _ease_preemption(ctx: PlanContext) -> Candidate | None:
    finding = ctx.findings.get("kv_cache_pressure")
    if finding is None or "load.preemptions_per_s" not in finding.evidence or ctx.figures is None:
        return None
    if ctx.engine == "sglang":
        entry = knob("sglang", "schedule_conservativeness")
        current = ctx.number("schedule_conservativeness")
        if entry is None or entry.flag is None or current is None:
            return None
        new = round(current * 1.3, 2)
        return ctx.build(
            slug="admit-more-conservatively",
            kind="batching",
            title=f"Reserve more decode room at admission ({entry.flag} {current:g} -> {new:g})",
            addresses=["kv_cache_pressure"],
            because="SGLang retracts running requests when admission was too optimistic; a larger margin avoids it.",
            changes={entry.flag: new},
            estimated={
                "preemptions_per_s": Estimate(-1.0, 0.0, ["retractions stop when admission keeps enough room"]),
                "generation_tokens_per_s": Estimate(
                    1 / 1.3 - 1, 0.0, ["at worst the batch shrinks by the margin added"]
                ),
            },
            risk=Risk(quality="low", stability="low"),
            fit={"throughput": 0, "balanced": 1, "latency": 1},
        )
    flag = ctx.flag("max_running_requests")
    running = ctx.figures.load.requests_running
    if ctx.engine != "vllm" or flag is None or not running or running < 2:
        return None
    new = max(1, math.floor(running * 0.9))
    effects = batch_change(running, float(new), ctx.step_fit)
    return ctx.build(
        slug="fewer-sequences-no-preemption",
        kind="batching",
        title=f"Admit fewer sequences so they fit the KV pool ({flag} -> {new})",
        addresses=["kv_cache_pressure"],
        because="Preempted sequences are recomputed from scratch; a batch that fits wastes no work.",
        changes={flag: new},
        estimated={
            "preemptions_per_s": Estimate(-1.0, 0.0, ["preemptions stop if 90% of the batch fits the pool"]),
            "generation_tokens_per_s": effects["throughput"],
        },
        risk=Risk(quality="low", stability="medium", notes=["less capacity: requests queue sooner"]),
        fit={"throughput": 0, "balanced": 1, "latency": 1},
    )


def batching_options(ctx: PlanContext) -> list[Candidate]:
    builders = (
        _raise_concurrency,
        _lower_batch_for_decode,
        _raise_token_budget,
        _enable_chunked_prefill,
        _admission_headroom,
        _tgi_admit_sooner,
        _ease_preemption,
    )
    return [c for c in (build(ctx) for build in builders) if c is not None]
