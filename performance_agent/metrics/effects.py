"""The measured effect of a change: canary against reference over a stage, each figure with a confidence interval.

The rollout judge decides *whether* a canary is worse than tolerated; this module says *how much*
the change moved each figure, so the outcome can be compared with what the optimization plan
predicted (`estimated_impact`). Inputs are the two cohorts' pooled bucket counts and counters
(`CohortCounts`), never interpolated quantiles. Pure: plain numbers in, plain numbers out.
It reads the judge's counts but lives in `metrics/`, beside the PromQL interpolation its point
estimates use: the judge package imports nothing of the agent (a leaf, see pyproject's import contracts).

Figures and their intervals (two-sided, `confidence` 0.95 by default):

* **Share above the SLO edge** per latency histogram: the share of requests above the largest
  bucket edge at or below the SLO limit (the complement of goodput's exact-or-lower-bound share),
  canary minus reference, with Newcombe's hybrid score interval (method 10 of Newcombe,
  Statistics in Medicine 17:873-890, 1998), built from Wilson score intervals.
* **Median, p90 and p99 as ratios within bucket resolution**: a quantile is only known to lie in
  a bucket. For each cohort the distribution-free order-statistic interval (the ranks l, u with
  Binomial(n, q) probabilities, as in Conover, *Practical Nonparametric Statistics*, 3.2) is
  widened to the bucket edges around those ranks; the ratio range is canary low / reference high
  to canary high / reference low, each cohort at 1 - alpha/2 so the range holds at 1 - alpha
  (Bonferroni). Unbounded when a rank falls in the first bucket of the reference (low edge 0) or
  the `+Inf` bucket of the canary: the buckets are then too coarse to bound the ratio, and the
  effect says so. The point estimate is the ratio of PromQL-interpolated quantiles, for display.
* **Goodput difference**: goodput's Fréchet lower bound 1 - Σ shareᵢ above the SLO edges (see
  `metrics.goodput`); its difference is minus the sum of the per-target differences, and the sum
  of their Newcombe intervals, each at 1 - alpha/k, covers it at 1 - alpha (Bonferroni), whatever the
  unknown correlation between the targets.
* **Rates as ratios on the log scale**: requests and preemptions per instance-second (Poisson
  counts, exposure = the instance-seconds each cohort was observed) and the error rate per
  request (Katz's log interval for a ratio of proportions). A zero count gets 0.5 added to
  both counts for the interval (Haldane) and a note; no count at all in the reference leaves
  the ratio unknown.
* **Error rate difference**: Newcombe's interval on errors / requests.

Inter-token latency counts tokens; `CohortCounts.histogram` rescales it to requests so the
intervals are sized by requests, not by the (correlated) tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from performance_agent.judge.counts import LATENCY_METRICS, PER_TOKEN_METRICS, BucketCounts, CohortCounts
from performance_agent.metrics.histogram import histogram_quantile

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = (
    "IMPACT_METRICS",
    "ImpactOutcome",
    "MeasuredEffect",
    "Verdict",
    "binomial_cdf",
    "compare_impacts",
    "compare_with_impact",
    "measure_effects",
    "newcombe_difference",
    "quantile_bucket_interval",
    "rate_ratio",
    "wilson_interval",
)

Verdict = Literal["within", "below", "above"]
EffectKind = Literal["difference", "ratio"]

#: Which measured effect each `estimated_impact` key of the planner predicts. Relative changes
#: of a latency p99 are compared with the p99 ratio range, queue time with the median queue
#: ratio, generation throughput with requests per instance (the same request mix gives the same
#: ratio; the canary's share of traffic is set by the load balancer, see the effect's note).
IMPACT_METRICS: dict[str, str] = {
    "ttft_p99_s": "ttft_s.p99",
    "itl_p99_s": "itl_s.p99",
    "queue_time_s": "queue_s.p50",
    "generation_tokens_per_s": "requests_per_instance",
    "preemptions_per_s": "preemptions_per_instance",
    "error_rate": "error_rate_ratio",
}

_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
_THROUGHPUT_NOTE = (
    "requests per instance (per second when exposures are known); in a canary the load balancer sets "
    "each cohort's share of traffic, so this measures capacity only when both cohorts are saturated"
)


class ImpactBounds(Protocol):
    """`optimization.schemas.ImpactRange`: a predicted relative change as a fraction (-0.35 = 35% lower)."""

    @property
    def low(self) -> float: ...
    @property
    def high(self) -> float: ...


class MeasuredEffect(msgspec.Struct, kw_only=True):
    """One figure's change, canary against reference, with its interval.

    `kind` `difference`: canary minus reference (shares, goodput, error rate); `ratio`: canary /
    reference (quantiles, rates). `low`/`high` bound the effect at `confidence`; null means
    unbounded on that side (too few counts or too coarse buckets, see `note`). For quantiles,
    `canary_interval` and `reference_interval` are the bucket edges the quantile lies between
    (`[low, high]`, high null for the `+Inf` bucket); `canary`/`reference` are the cohorts' own
    figures (interpolated quantiles for display, shares, rates).
    """

    metric: str
    kind: EffectKind
    estimate: float | None
    low: float | None
    high: float | None
    confidence: float
    canary: float | None = None
    reference: float | None = None
    canary_interval: list[float | None] | None = None
    reference_interval: list[float | None] | None = None
    note: str | None = None


class ImpactOutcome(msgspec.Struct, kw_only=True):
    """A predicted impact set against its measurement: `within`, `below`, `above`, or not compared (`reason`).

    `measured_change`, `measured_low` and `measured_high` are in the prediction's unit, a relative
    change as a fraction (a ratio r is r - 1); null bounds are unbounded.
    """

    impact_key: str
    predicted_low: float
    predicted_high: float
    metric: str | None
    outcome: Verdict | None
    measured_change: float | None = None
    measured_low: float | None = None
    measured_high: float | None = None
    confidence: float | None = None
    reason: str | None = None


# -------------------------------------------------------------------- interval arithmetic


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: float, trials: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (Wilson, JASA 1927); (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = min(max(successes / trials, 0.0), 1.0)
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2.0 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / trials + z * z / (4.0 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_difference(
    successes_a: float, trials_a: float, successes_b: float, trials_b: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(estimate, low, high) of p_a - p_b with Newcombe's hybrid score interval; both trials must be positive."""
    if trials_a <= 0 or trials_b <= 0:
        raise ValueError("both proportions need at least one trial")
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    low_a, high_a = wilson_interval(successes_a, trials_a, confidence)
    low_b, high_b = wilson_interval(successes_b, trials_b, confidence)
    estimate = p_a - p_b
    low = estimate - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = estimate + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return estimate, max(low, -1.0), min(high, 1.0)


@dataclass(frozen=True, slots=True)
class RateRatio:
    estimate: float
    low: float
    high: float
    corrected: bool


def rate_ratio(
    count_a: float, exposure_a: float, count_b: float, exposure_b: float, confidence: float = 0.95, *, binomial: bool
) -> RateRatio | None:
    """(count_a / exposure_a) / (count_b / exposure_b) with a log-scale interval.

    Poisson counts (`binomial=False`): variance of the log ratio 1/a + 1/b. Proportions
    (`binomial=True`, exposures are trials): Katz et al. (Biometrics 1978), 1/a - 1/n_a + 1/b -
    1/n_b. A zero count adds 0.5 to both counts for the interval (`corrected`); None when the
    reference counted nothing or an exposure is not positive (the ratio is then unknown).
    """
    if exposure_a <= 0 or exposure_b <= 0 or count_b <= 0 or count_a < 0:
        return None
    estimate = (count_a / exposure_a) / (count_b / exposure_b)
    corrected = count_a == 0
    a, b = (count_a + 0.5, count_b + 0.5) if corrected else (count_a, count_b)
    variance = 1.0 / a + 1.0 / b
    if binomial:
        variance -= 1.0 / (exposure_a + (0.5 if corrected else 0.0)) + 1.0 / (exposure_b + (0.5 if corrected else 0.0))
    centre = math.log((a / exposure_a) / (b / exposure_b))
    spread = _z(confidence) * math.sqrt(max(variance, 0.0))
    return RateRatio(estimate, math.exp(centre - spread), math.exp(centre + spread), corrected)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by Lentz's continued fraction (Numerical Recipes, 2nd ed., 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _regularized_beta(1.0 - x, b, a)
    tiny, epsilon = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 100_000):
        step = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + step * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + step / c if abs(1.0 + step / c) > tiny else tiny
        fraction *= d * c
        step = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + step * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + step / c if abs(1.0 + step / c) > tiny else tiny
        delta = d * c
        fraction *= delta
        if abs(delta - 1.0) < epsilon:
            break
    return math.exp(log_front) * fraction / a


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) ≤ k), exact through the regularized incomplete beta function."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return _regularized_beta(1.0 - p, n - k, k + 1)


def _smallest_rank(n: int, p: float, level: float) -> int:
    """Smallest k in 0..n+1 with P(Binomial(n, p) ≤ k - 1) ≥ level (n + 1 when none is)."""
    low, high = 0, n + 1
    while low < high:
        middle = (low + high) // 2
        if binomial_cdf(middle - 1, n, p) >= level:
            high = middle
        else:
            low = middle + 1
    return low


def quantile_bucket_interval(
    counts: BucketCounts, q: float, confidence: float = 0.95
) -> tuple[float, float | None] | None:
    """Bucket edges that hold the q-quantile with probability ≥ `confidence` (high None: the +Inf bucket).

    The order statistics X_(l) ≤ ξ_q ≤ X_(u) with P(Bin(n, q) ≤ l - 1) ≤ alpha/2 and
    P(Bin(n, q) ≥ u) ≤ alpha/2 bracket the quantile (Conover 3.2); each is then known only to its
    bucket, so the interval runs from the lower edge of l's bucket to the upper edge of u's.
    None without observations.
    """
    n = round(counts.total)
    if n <= 0:
        return None
    alpha = 1.0 - confidence
    lower_rank = _smallest_rank(n, q, alpha / 2.0 + 1e-15) - 1  # largest l with CDF(l - 1) ≤ alpha/2
    upper_rank = _smallest_rank(n, q, 1.0 - alpha / 2.0)
    scale = n / counts.total  # counts may be rescaled (per-token histograms): ranks are in requests
    low = 0.0
    if lower_rank >= 1:
        for index, cumulative in enumerate(counts.counts_le):
            if cumulative * scale >= lower_rank:
                low = counts.edges[index - 1] if index > 0 else 0.0
                break
        else:
            low = counts.edges[-1] if counts.edges else 0.0
    high: float | None = None
    if upper_rank <= n:
        for index, cumulative in enumerate(counts.counts_le):
            if cumulative * scale >= upper_rank:
                high = counts.edges[index]
                break
    return low, high


# -------------------------------------------------------------------- effects


def _share_edge(counts: BucketCounts, limit_s: float) -> float | None:
    """The largest edge at or below the SLO limit: above it is an upper bound of the share above the limit."""
    below = [edge for edge in counts.edges if edge <= limit_s]
    return below[-1] if below else None


def _share_above(
    metric: str, canary: BucketCounts, reference: BucketCounts, limit_s: float, confidence: float
) -> MeasuredEffect | None:
    edge = _share_edge(canary, limit_s)
    if edge is None or edge not in reference.edges or canary.total <= 0 or reference.total <= 0:
        return None
    estimate, low, high = newcombe_difference(
        canary.above(edge), canary.total, reference.above(edge), reference.total, confidence
    )
    exact = "" if edge == limit_s else f" (the SLO limit {limit_s:g} s is not an edge: read at {edge:g} s)"
    unit = "tokens (sized as requests)" if metric in PER_TOKEN_METRICS else "requests"
    return MeasuredEffect(
        metric=f"{metric}.share_above_slo",
        kind="difference",
        estimate=estimate,
        low=low,
        high=high,
        confidence=confidence,
        canary=canary.above(edge) / canary.total,
        reference=reference.above(edge) / reference.total,
        note=f"share of {unit} above {edge:g} s{exact}",
    )


def _interpolated(counts: BucketCounts, q: float) -> float | None:
    buckets = [*zip(counts.edges, counts.counts_le, strict=True), (math.inf, counts.total)]
    value = histogram_quantile(q, buckets)
    return value if value is not None and math.isfinite(value) else None


def _quantile_ratio(
    metric: str, name: str, q: float, canary: BucketCounts, reference: BucketCounts, confidence: float
) -> MeasuredEffect | None:
    per_cohort = 1.0 - (1.0 - confidence) / 2.0  # Bonferroni over the two cohorts
    canary_bounds = quantile_bucket_interval(canary, q, per_cohort)
    reference_bounds = quantile_bucket_interval(reference, q, per_cohort)
    if canary_bounds is None or reference_bounds is None:
        return None
    canary_low, canary_high = canary_bounds
    reference_low, reference_high = reference_bounds
    low = canary_low / reference_high if reference_high is not None and reference_high > 0 else None
    high = canary_high / reference_low if canary_high is not None and reference_low > 0 else None
    canary_value, reference_value = _interpolated(canary, q), _interpolated(reference, q)
    estimate = canary_value / reference_value if canary_value is not None and reference_value else None
    notes = ["point estimate from quantiles interpolated inside buckets (display only)"]
    if high is None or low is None or low == 0.0:
        notes.append("bucket resolution too coarse to bound the ratio on this side")
    elif low <= 1.0 <= high:
        notes.append(f"no change resolvable at this bucket resolution (ratio between {low:.3g} and {high:.3g})")
    return MeasuredEffect(
        metric=f"{metric}.{name}",
        kind="ratio",
        estimate=estimate,
        low=low if low else None,
        high=high,
        confidence=confidence,
        canary=canary_value,
        reference=reference_value,
        canary_interval=[canary_low, canary_high],
        reference_interval=[reference_low, reference_high],
        note="; ".join(notes),
    )


def _goodput_difference(
    pairs: Sequence[tuple[BucketCounts, BucketCounts, float]], confidence: float
) -> MeasuredEffect | None:
    """Difference of the Fréchet goodput bounds, Bonferroni over the request-level targets."""
    usable = [
        (canary, reference, edge)
        for canary, reference, limit in pairs
        if (edge := _share_edge(canary, limit)) is not None and edge in reference.edges
    ]
    if not usable or any(c.total <= 0 or r.total <= 0 for c, r, _ in usable):
        return None
    each = 1.0 - (1.0 - confidence) / len(usable)
    estimate = low = high = 0.0
    canary_good = reference_good = 1.0
    for canary, reference, edge in usable:
        difference, below, above = newcombe_difference(
            canary.above(edge), canary.total, reference.above(edge), reference.total, each
        )
        estimate -= difference  # more requests above an edge is less goodput
        low -= above
        high -= below
        canary_good -= canary.above(edge) / canary.total
        reference_good -= reference.above(edge) / reference.total
    return MeasuredEffect(
        metric="goodput",
        kind="difference",
        estimate=estimate,
        low=max(low, -1.0),
        high=min(high, 1.0),
        confidence=confidence,
        canary=max(canary_good, 0.0),
        reference=max(reference_good, 0.0),
        note=f"Fréchet lower bound of goodput over {len(usable)} request-level target(s), not clipped at 0",
    )


def _ratio_effect(
    metric: str,
    count_a: float | None,
    exposure_a: float,
    count_b: float | None,
    exposure_b: float,
    confidence: float,
    *,
    binomial: bool,
    note: str | None = None,
) -> MeasuredEffect | None:
    if count_a is None or count_b is None:
        return None
    found = rate_ratio(count_a, exposure_a, count_b, exposure_b, confidence, binomial=binomial)
    if found is None:
        return None
    notes = [note] if note else []
    if found.corrected:
        notes.append("a zero count: 0.5 added to both counts for the interval")
    return MeasuredEffect(
        metric=metric,
        kind="ratio",
        estimate=found.estimate,
        low=found.low,
        high=found.high,
        confidence=confidence,
        canary=count_a / exposure_a,
        reference=count_b / exposure_b,
        note="; ".join(notes) or None,
    )


def measure_effects(
    canary: CohortCounts,
    reference: CohortCounts,
    slo_limits: Mapping[str, float],
    *,
    confidence: float = 0.95,
    canary_exposure_s: float | None = None,
    reference_exposure_s: float | None = None,
) -> list[MeasuredEffect]:
    """Every effect the two cohorts' pooled counts support; a figure either cohort lacks is left out.

    `slo_limits` maps histogram keys (`ttft_s`, `e2e_s`, `itl_s`, `queue_s`) to the SLO's
    per-request limit in seconds; only those histograms get a share above the SLO edge, and the
    request-level ones (not `itl_s`) make up goodput. The exposures are the instance-seconds each
    cohort was observed (Σ over its instances of their window); rates per instance are then per
    second, and cohorts observed over different spans (a stage against the baseline) compare
    fairly. Without them both cohorts must cover the same span, and the exposure is `instances`.
    """
    _z(confidence)  # refuse a meaningless level before doing any work
    if (canary_exposure_s is None) != (reference_exposure_s is None):
        raise ValueError("give both cohorts' exposures or neither")
    canary_exposure = float(canary.instances) if canary_exposure_s is None else canary_exposure_s
    reference_exposure = float(reference.instances) if reference_exposure_s is None else reference_exposure_s
    effects: list[MeasuredEffect] = []
    goodput_pairs: list[tuple[BucketCounts, BucketCounts, float]] = []
    for metric in LATENCY_METRICS:
        canary_counts, reference_counts = canary.histogram(metric), reference.histogram(metric)
        if canary_counts is None or reference_counts is None:
            continue
        limit = slo_limits.get(metric)
        if limit is not None:
            share = _share_above(metric, canary_counts, reference_counts, limit, confidence)
            if share is not None:
                effects.append(share)
            if metric not in PER_TOKEN_METRICS:
                goodput_pairs.append((canary_counts, reference_counts, limit))
        for name, q in _QUANTILES:
            ratio = _quantile_ratio(metric, name, q, canary_counts, reference_counts, confidence)
            if ratio is not None:
                effects.append(ratio)
    goodput = _goodput_difference(goodput_pairs, confidence)
    if goodput is not None:
        effects.append(goodput)
    per_instance = (
        ("requests_per_instance", canary.requests, reference.requests, _THROUGHPUT_NOTE),
        ("preemptions_per_instance", canary.preemptions, reference.preemptions, None),
    )
    for name, canary_count, reference_count, note in per_instance:
        rate = _ratio_effect(
            name,
            canary_count,
            canary_exposure,
            reference_count,
            reference_exposure,
            confidence,
            binomial=False,
            note=note,
        )
        if rate is not None:
            effects.append(rate)
    if canary.errors is not None and reference.errors is not None and canary.requests > 0 and reference.requests > 0:
        estimate, low, high = newcombe_difference(
            canary.errors, canary.requests, reference.errors, reference.requests, confidence
        )
        effects.append(
            MeasuredEffect(
                metric="error_rate",
                kind="difference",
                estimate=estimate,
                low=low,
                high=high,
                confidence=confidence,
                canary=canary.errors / canary.requests,
                reference=reference.errors / reference.requests,
            )
        )
        ratio = _ratio_effect(
            "error_rate_ratio",
            canary.errors,
            canary.requests,
            reference.errors,
            reference.requests,
            confidence,
            binomial=True,
        )
        if ratio is not None:
            effects.append(ratio)
    return effects


# -------------------------------------------------------------------- predictions


def _relative(effect: MeasuredEffect, value: float | None) -> float | None:
    if value is None:
        return None
    return value - 1.0 if effect.kind == "ratio" else value


def compare_with_impact(effect: MeasuredEffect, impact: ImpactBounds) -> Verdict:
    """Where the measured relative change lies against the predicted range.

    `within` unless the interval excludes the whole range: `above` when the measured change is
    surely larger than `impact.high`, `below` when surely smaller than `impact.low`. A ratio is
    compared as ratio - 1, a difference as is (the planner's relative changes are fractions).
    An interval unbounded on the relevant side cannot exclude the range.
    """
    low, high = _relative(effect, effect.low), _relative(effect, effect.high)
    if low is not None and low > impact.high:
        return "above"
    if high is not None and high < impact.low:
        return "below"
    return "within"


def compare_impacts(
    effects: Sequence[MeasuredEffect], estimated_impact: Mapping[str, ImpactBounds]
) -> list[ImpactOutcome]:
    """Each predicted impact with its outcome, or the reason it could not be compared."""
    by_metric = {effect.metric: effect for effect in effects}
    outcomes: list[ImpactOutcome] = []
    for key, predicted in sorted(estimated_impact.items()):
        metric = IMPACT_METRICS.get(key)
        effect = by_metric.get(metric) if metric is not None else None
        outcome = ImpactOutcome(
            impact_key=key, predicted_low=predicted.low, predicted_high=predicted.high, metric=metric, outcome=None
        )
        if metric is None:
            outcome.reason = f"{key} has no measured counterpart in request and bucket counts"
        elif effect is None:
            outcome.reason = (
                f"{metric} could not be measured in this stage (missing histogram or counter, or no requests)"
            )
        else:
            outcome.outcome = compare_with_impact(effect, predicted)
            outcome.measured_change = _relative(effect, effect.estimate)
            outcome.measured_low = _relative(effect, effect.low)
            outcome.measured_high = _relative(effect, effect.high)
            outcome.confidence = effect.confidence
        outcomes.append(outcome)
    return outcomes
