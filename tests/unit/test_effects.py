"""Measured effects with confidence intervals, checked against published values, hand counts and simulation."""

from __future__ import annotations

import bisect
import math
import random

import pytest

from performance_agent.judge.counts import BucketCounts, CohortCounts
from performance_agent.metrics.effects import (
    IMPACT_METRICS,
    MeasuredEffect,
    binomial_cdf,
    compare_impacts,
    compare_with_impact,
    measure_effects,
    newcombe_difference,
    quantile_bucket_interval,
    rate_ratio,
    wilson_interval,
)
from performance_agent.optimization.schemas import ImpactRange

EDGES = [0.1, 0.2, 0.5, 1.0]


def counts(counts_le: list[float], total: float, edges: list[float] | None = None) -> BucketCounts:
    return BucketCounts(edges=list(edges or EDGES), counts_le=counts_le, total=total)


def effect(kind: str, low: float | None, high: float | None, estimate: float = 0.0) -> MeasuredEffect:
    return MeasuredEffect(metric="m", kind=kind, estimate=estimate, low=low, high=high, confidence=0.95)  # type: ignore[arg-type]


# -------------------------------------------------------------------- published and hand values


def test_wilson_and_newcombe_match_newcombes_worked_example() -> None:
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-4)
    # Newcombe (1998), method 10, example 56/70 - 48/80: 0.2000 (0.0524, 0.3339).
    estimate, low, high = newcombe_difference(56, 70, 48, 80)
    assert estimate == pytest.approx(0.2)
    assert low == pytest.approx(0.0524, abs=1e-4)
    assert high == pytest.approx(0.3339, abs=1e-4)


def test_newcombe_refuses_empty_cohorts_and_meaningless_levels() -> None:
    with pytest.raises(ValueError, match="at least one trial"):
        newcombe_difference(1, 0, 1, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, confidence=1.0)


@pytest.mark.parametrize(("n", "p"), [(1, 0.5), (10, 0.3), (37, 0.9), (100, 0.5), (250, 0.01)])
def test_binomial_cdf_equals_the_exact_sum(n: int, p: float) -> None:
    for k in range(-1, n + 2):
        exact = math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(min(k, n) + 1))
        assert binomial_cdf(k, n, p) == pytest.approx(exact, abs=1e-10)


def test_the_median_is_bracketed_by_the_buckets_of_its_order_statistic_ranks() -> None:
    # n = 100, median at 95%: ranks 40 and 61 (P(B <= 39) = 0.018, P(B <= 60) = 0.982), both in (0.2, 0.5].
    assert quantile_bucket_interval(counts([10, 35, 70, 95], 100), 0.5) == (0.2, 0.5)
    # The same ranks in a slower histogram fall in (0.5, 1.0].
    assert quantile_bucket_interval(counts([0, 5, 30, 90], 100), 0.5) == (0.5, 1.0)
    # The p99 of 100 requests needs rank 101 > n: unbounded above.
    assert quantile_bucket_interval(counts([10, 35, 70, 95], 100), 0.99) == (1.0, None)
    # A rank in the first bucket has 0 as its lower edge.
    assert quantile_bucket_interval(counts([65, 80, 90, 95], 100), 0.5) == (0.0, 0.1)  # ranks 40, 61 <= 65
    assert quantile_bucket_interval(counts([0, 0, 0, 0], 0), 0.5) is None


def test_rate_ratio_on_the_log_scale() -> None:
    found = rate_ratio(200, 2, 100, 2, binomial=False)
    assert found is not None
    assert found.estimate == pytest.approx(2.0)
    spread = 1.959964 * math.sqrt(1 / 200 + 1 / 100)
    assert found.low == pytest.approx(2.0 * math.exp(-spread), rel=1e-5)
    assert found.high == pytest.approx(2.0 * math.exp(spread), rel=1e-5)
    assert not found.corrected
    zero = rate_ratio(0, 1, 10, 1, binomial=False)
    assert zero is not None
    assert zero.estimate == 0.0
    assert zero.corrected
    assert zero.high > 0
    assert rate_ratio(5, 1, 0, 1, binomial=False) is None  # nothing counted in the reference
    assert rate_ratio(5, 0, 5, 1, binomial=False) is None


# -------------------------------------------------------------------- effects of two cohorts


def cohort(
    ttft: BucketCounts | None, *, requests: float, errors: float | None = 0.0, instances: int = 1
) -> CohortCounts:
    histograms = {"ttft_s": ttft} if ttft is not None else {}
    return CohortCounts(instances=instances, requests=requests, errors=errors, preemptions=None, histograms=histograms)


def test_effects_of_a_slower_canary_from_hand_counts() -> None:
    canary = cohort(counts([0, 5, 30, 90], 100), requests=100, errors=2)
    reference = cohort(counts([10, 35, 70, 95], 100), requests=100, errors=1)
    effects = {e.metric: e for e in measure_effects(canary, reference, {"ttft_s": 0.5})}

    share = effects["ttft_s.share_above_slo"]
    assert share.canary == pytest.approx(0.70)  # 70 of 100 above 0.5 s
    assert share.reference == pytest.approx(0.30)
    assert share.estimate == pytest.approx(0.40)
    assert share.low is not None
    assert share.low > 0.2

    median = effects["ttft_s.p50"]
    # Each cohort at 97.5% (ranks 39 and 62): canary (0.5, 1.0], reference (0.2, 0.5].
    assert median.canary_interval == [0.5, 1.0]
    assert median.reference_interval == [0.2, 0.5]
    assert median.low == pytest.approx(1.0)
    assert median.high == pytest.approx(5.0)
    assert median.note is not None
    assert "no change resolvable" in median.note  # 1.0 is in the range: the buckets cannot exclude it

    assert effects["ttft_s.p99"].high is None  # +Inf bucket: too coarse to bound
    assert "too coarse" in (effects["ttft_s.p99"].note or "")

    goodput = effects["goodput"]
    assert goodput.canary == pytest.approx(0.30)
    assert goodput.reference == pytest.approx(0.70)
    assert goodput.estimate == pytest.approx(-0.40)
    assert goodput.low == pytest.approx(-share.high)  # type: ignore[operator]  # one target: minus the share interval
    assert goodput.high == pytest.approx(-share.low)

    throughput = effects["requests_per_instance"]
    assert throughput.estimate == pytest.approx(1.0)
    assert effects["error_rate"].estimate == pytest.approx(0.01)
    assert effects["error_rate_ratio"].estimate == pytest.approx(2.0)
    assert "preemptions_per_instance" not in effects  # neither cohort has the counter


def test_the_goodput_interval_is_bonferroni_over_targets() -> None:
    e2e = counts([0, 0, 0, 90], 100, [1.0, 2.0, 5.0, 10.0])
    canary = CohortCounts(instances=1, requests=100, histograms={"ttft_s": counts([0, 5, 30, 90], 100), "e2e_s": e2e})
    reference = CohortCounts(
        instances=1, requests=100, histograms={"ttft_s": counts([10, 35, 70, 95], 100), "e2e_s": e2e}
    )
    effects = {e.metric: e for e in measure_effects(canary, reference, {"ttft_s": 0.5, "e2e_s": 10.0})}
    goodput = effects["goodput"]
    # Fréchet bounds: canary 1 - 0.70 - 0.10 = 0.20, reference 1 - 0.30 - 0.10 = 0.60.
    assert goodput.canary == pytest.approx(0.20)
    assert goodput.reference == pytest.approx(0.60)
    assert goodput.estimate == pytest.approx(-0.40)
    ttft_at_975 = newcombe_difference(70, 100, 30, 100, 0.975)
    e2e_at_975 = newcombe_difference(10, 100, 10, 100, 0.975)
    assert goodput.low == pytest.approx(-(ttft_at_975[2] + e2e_at_975[2]))
    assert goodput.high == pytest.approx(-(ttft_at_975[1] + e2e_at_975[1]))


def test_token_level_itl_is_sized_by_requests_and_left_out_of_goodput() -> None:
    tokens = counts([0, 0, 9000, 9900], 10_000, [0.01, 0.02, 0.05, 0.1])
    canary = CohortCounts(instances=1, requests=100, histograms={"itl_s": tokens})
    reference = CohortCounts(instances=1, requests=100, histograms={"itl_s": tokens})
    effects = {e.metric: e for e in measure_effects(canary, reference, {"itl_s": 0.05})}
    share = effects["itl_s.share_above_slo"]
    # Rescaled to 100 requests: the interval is that of 10 in 100, not 1,000 in 10,000.
    assert (share.low, share.high) == pytest.approx(newcombe_difference(10, 100, 10, 100)[1:])
    assert "goodput" not in effects


def test_missing_histograms_or_requests_give_no_effect() -> None:
    empty = cohort(None, requests=0, errors=None, instances=0)
    full = cohort(counts([10, 35, 70, 95], 100), requests=100)
    assert measure_effects(empty, full, {"ttft_s": 0.5}) == []
    with pytest.raises(ValueError, match="confidence"):
        measure_effects(full, full, {}, confidence=0.0)


# -------------------------------------------------------------------- predictions


def test_compare_with_impact_checks_whether_the_interval_excludes_the_range() -> None:
    predicted = ImpactRange(low=-0.35, high=-0.10)
    assert compare_with_impact(effect("ratio", 0.70, 0.85), predicted) == "within"
    assert compare_with_impact(effect("ratio", 0.40, 0.60), predicted) == "below"  # more than 35% lower
    assert compare_with_impact(effect("ratio", 0.95, 1.10), predicted) == "above"  # less of a drop than predicted
    assert compare_with_impact(effect("ratio", None, 0.62), predicted) == "below"
    assert compare_with_impact(effect("ratio", 0.95, None), predicted) == "above"
    assert compare_with_impact(effect("ratio", None, None), predicted) == "within"  # unbounded: cannot exclude
    assert compare_with_impact(effect("difference", -0.05, 0.02), ImpactRange(low=0.1, high=0.2)) == "below"


def test_compare_impacts_maps_plan_keys_and_says_what_it_cannot_compare() -> None:
    measured = [
        MeasuredEffect(metric="ttft_s.p99", kind="ratio", estimate=0.8, low=0.7, high=0.9, confidence=0.95),
    ]
    outcomes = compare_impacts(
        measured,
        {
            "ttft_p99_s": ImpactRange(low=-0.5, high=0.0),
            "kv_cache_capacity_tokens": ImpactRange(low=1.0, high=1.0),
            "itl_p99_s": ImpactRange(low=-0.3, high=0.0),
        },
    )
    by_key = {outcome.impact_key: outcome for outcome in outcomes}
    ttft = by_key["ttft_p99_s"]
    assert ttft.outcome == "within"
    assert ttft.metric == "ttft_s.p99"
    assert ttft.measured_change == pytest.approx(-0.2)
    assert (ttft.measured_low, ttft.measured_high) == pytest.approx((-0.3, -0.1))
    assert by_key["kv_cache_capacity_tokens"].outcome is None
    assert "no measured counterpart" in (by_key["kv_cache_capacity_tokens"].reason or "")
    assert by_key["itl_p99_s"].outcome is None
    assert "could not be measured" in (by_key["itl_p99_s"].reason or "")


def test_every_impact_key_the_planner_writes_is_mapped_or_named_unmeasurable() -> None:
    assert set(IMPACT_METRICS) == {
        "ttft_p99_s",
        "itl_p99_s",
        "queue_time_s",
        "generation_tokens_per_s",
        "preemptions_per_s",
        "error_rate",
    }


# -------------------------------------------------------------------- coverage by simulation


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(1 for _ in range(n) if rng.random() < p)


def _poisson(rng: random.Random, mean: float) -> int:
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


DRAWS = 500


def test_newcombe_interval_covers_the_true_difference_about_95_percent() -> None:
    rng = random.Random(20261203)
    p_canary, p_reference, n_canary, n_reference = 0.12, 0.08, 150, 1200
    covered = 0
    for _ in range(DRAWS):
        _, low, high = newcombe_difference(
            _binomial(rng, n_canary, p_canary), n_canary, _binomial(rng, n_reference, p_reference), n_reference
        )
        covered += low <= p_canary - p_reference <= high
    assert 0.92 <= covered / DRAWS <= 0.98


def test_poisson_rate_ratio_interval_covers_about_95_percent() -> None:
    rng = random.Random(7)
    covered = 0
    for _ in range(DRAWS):
        found = rate_ratio(_poisson(rng, 60.0), 2, _poisson(rng, 200.0), 8, binomial=False)
        assert found is not None
        covered += found.low <= (30.0 / 25.0) <= found.high
    assert 0.92 <= covered / DRAWS <= 0.98


def test_quantile_bucket_interval_covers_the_true_median_about_95_percent() -> None:
    rng = random.Random(11)
    edges = [round(0.005 * i, 3) for i in range(1, 400)]  # fine buckets: the rank interval, barely widened
    true_median = 0.253  # lognormal(log 0.253, 0.8), between two edges
    covered = 0
    for _ in range(DRAWS):
        sample = sorted(rng.lognormvariate(math.log(true_median), 0.8) for _ in range(120))
        counts_le = [float(bisect.bisect_right(sample, edge)) for edge in edges]
        found = quantile_bucket_interval(BucketCounts(edges=edges, counts_le=counts_le, total=120), 0.5)
        assert found is not None
        low, high = found
        covered += low <= true_median <= (high if high is not None else math.inf)
    # Order-statistic intervals are conservative (discrete ranks) and widening to edges adds a little.
    assert 0.93 <= covered / DRAWS <= 0.995


def test_exposures_make_rates_per_instance_second() -> None:
    canary = cohort(counts([10, 35, 70, 95], 100), requests=90, instances=1)
    reference = cohort(counts([10, 35, 70, 95], 100), requests=300, instances=1)
    # The reference was observed for 100 s, the canary for 30 s: 3 vs 3 requests per second.
    effects = {
        e.metric: e for e in measure_effects(canary, reference, {}, canary_exposure_s=30.0, reference_exposure_s=100.0)
    }
    assert effects["requests_per_instance"].estimate == pytest.approx(1.0)
    assert effects["requests_per_instance"].canary == pytest.approx(3.0)
    with pytest.raises(ValueError, match="both"):
        measure_effects(canary, reference, {}, canary_exposure_s=30.0)


def test_goodput_difference_interval_covers_the_bound_difference_at_least_95_percent() -> None:
    # Requests with correlated TTFT and e2e (a slow TTFT makes a slow e2e), bucketed at vLLM-like edges.
    rng = random.Random(5)
    ttft_edges, e2e_edges = [0.25, 0.5, 1.0, 2.5], [5.0, 10.0, 20.0, 30.0]
    limits = {"ttft_s": 1.0, "e2e_s": 20.0}

    def cumulative(values: list[float], edges: list[float]) -> list[float]:
        values.sort()
        return [float(bisect.bisect_right(values, edge)) for edge in edges]

    def draw(n: int, slowdown: float) -> CohortCounts:
        ttft = [rng.lognormvariate(math.log(0.4 * slowdown), 0.8) for _ in range(n)]
        e2e = [first * 8 + rng.lognormvariate(math.log(6.0), 0.5) for first in ttft]
        return CohortCounts(
            instances=1,
            requests=n,
            histograms={
                "ttft_s": BucketCounts(edges=ttft_edges, counts_le=cumulative(ttft, ttft_edges), total=n),
                "e2e_s": BucketCounts(edges=e2e_edges, counts_le=cumulative(e2e, e2e_edges), total=n),
            },
        )

    # True shares above 1 s (TTFT) and above 20 s (e2e) from a large sample of each cohort.
    truth = {}
    for name, slowdown in (("canary", 1.3), ("reference", 1.0)):
        big = draw(40_000, slowdown)
        truth[name] = 1.0 - sum(big.histograms[k].above(limits[k]) / big.requests for k in limits)
    true_difference = truth["canary"] - truth["reference"]
    covered = 0
    for _ in range(DRAWS):
        found = {e.metric: e for e in measure_effects(draw(150, 1.3), draw(450, 1.0), limits)}["goodput"]
        assert found.low is not None
        assert found.high is not None
        covered += found.low <= true_difference <= found.high
    # Bonferroni over two targets is conservative (about 99% here): at least nominal, within noise.
    assert covered / DRAWS >= 0.93
