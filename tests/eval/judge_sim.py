"""Simulated canary rollouts on vLLM TTFT bucket counts, judged by the real judge (`make eval-judge`).

Only what the judge sees is simulated: per window and cohort, the requests, errors, preemptions
and TTFT bucket counts. Requests arrive as a Poisson process, so the count in each bucket is an
independent Poisson draw with mean (expected requests) x (the shape's probability of that bucket):
exact, and cheap enough to run thousands of workflows in pure Python. Windows only carry the edges
the plan tests; the judge reads nothing else, so this is the same as carrying all 22 edges.

Design (documented in docs/rollout.md and printed with the table):
* 10 instances; stages 10/50/100% are 1/9, 5/5 and 10/0 canary/control instances; every
  instance receives `rate` requests per 15 s window (120 or 15), so the canary's traffic grows
  with its share (120 -> 600 -> 1200 requests per window); at 100% it is judged against the
  pre-rollout baseline.
* The baseline is one 15 s window of all 10 instances before the change (what the reconciler
  captures); its first canary instance against the other nine is the A/A check.
* 300 s stages with 60 s warm-up: 16 judged windows; the extension is another 300 s (20 windows).
* Load jitter: per window a factor 1 + U(-0.1, 0.1) scales both cohorts' traffic and latency.
* Errors: 0.2% of requests in both cohorts; preemptions: 0.01 per request.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from performance_agent.judge import BucketCounts, CohortCounts

__all__ = ("SHAPES", "TTFT_EDGES", "Shape", "cohort_window", "poisson")

# vLLM's `vllm:time_to_first_token_seconds` buckets (vllm/v1/metrics/loggers.py, vLLM 0.10/0.11).
TTFT_EDGES = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ERROR_SHARE = 0.002
PREEMPTIONS_PER_REQUEST = 0.01


@dataclass(frozen=True, slots=True)
class Shape:
    """A TTFT distribution: lognormal (median, sigma) with a share of requests `slow_factor` slower."""

    name: str
    median_s: float
    sigma: float
    slow_share: float = 0.0
    slow_factor: float = 1.0

    def cdf(self, seconds: float) -> float:
        fast = _lognormal_cdf(seconds, self.median_s, self.sigma)
        if self.slow_share == 0:
            return fast
        slow = _lognormal_cdf(seconds, self.median_s * self.slow_factor, self.sigma)
        return (1.0 - self.slow_share) * fast + self.slow_share * slow


def _lognormal_cdf(seconds: float, median: float, sigma: float) -> float:
    return 0.5 * math.erfc(-(math.log(seconds) - math.log(median)) / (sigma * math.sqrt(2.0)))


SHAPES = (
    Shape("lognormal sigma 0.5", median_s=0.06, sigma=0.5),
    Shape("lognormal sigma 0.8", median_s=0.25, sigma=0.8),
    Shape("93/7 mixture, slow 6x", median_s=0.2, sigma=0.5, slow_share=0.07, slow_factor=6.0),
)


def poisson(rng: random.Random, mean: float) -> int:
    """An exact Poisson draw: multiplication for small means, Hormann's PTRS (1993) above 10."""
    if mean <= 0:
        return 0
    if mean < 10:
        limit, product, count = math.exp(-mean), rng.random(), 0
        while product > limit:
            product *= rng.random()
            count += 1
        return count
    log_mean = math.log(mean)
    b = 0.931 + 2.53 * math.sqrt(mean)
    a = -0.059 + 0.02483 * b
    inverse_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= v_r:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v * inverse_alpha / (a / (us * us) + b)) <= -mean + k * log_mean - math.lgamma(k + 1):
            return k


def cohort_window(
    rng: random.Random, shape: Shape, edges: list[float], *, instances: int, rate: float, slowdown: float
) -> CohortCounts:
    """One window of one cohort: `rate` expected requests per instance, latencies x `slowdown`."""
    mean = rate * instances
    counts_le, running, previous = [], 0, 0.0
    for edge in edges:
        probability = shape.cdf(edge / slowdown)
        running += poisson(rng, mean * (probability - previous))
        counts_le.append(float(running))
        previous = probability
    total = running + poisson(rng, mean * (1.0 - previous))
    return CohortCounts(
        instances=instances,
        requests=float(total),
        errors=float(poisson(rng, total * ERROR_SHARE)),
        preemptions=float(poisson(rng, total * PREEMPTIONS_PER_REQUEST)),
        histograms={"ttft_s": BucketCounts(edges=list(edges), counts_le=counts_le, total=float(total))},
    )
