"""The judge's likelihood ratios with plain numbers: exact sums, the supermartingale property, bounds."""

from __future__ import annotations

import math

import pytest

from performance_agent.judge.likelihood import (
    binomial_log_ratios,
    fnch_log_normalizer,
    fnch_log_ratios,
    log_mean_exp,
    odds,
    share_of_odds,
    upper_confidence_bound,
)


def brute_log_normalizer(n1: int, n0: int, m: int, log_psi: float) -> float:
    terms = [
        math.log(math.comb(n1, x)) + math.log(math.comb(n0, m - x)) + x * log_psi
        for x in range(max(0, m - n0), min(n1, m) + 1)
    ]
    top = max(terms)
    return top + math.log(sum(math.exp(term - top) for term in terms))


def pmf(x: int, n1: int, n0: int, m: int, psi: float) -> float:
    weights = {y: math.comb(n1, y) * math.comb(n0, m - y) * psi**y for y in range(max(0, m - n0), min(n1, m) + 1)}
    return weights[x] / sum(weights.values())


@pytest.mark.parametrize(
    ("n1", "n0", "m"),
    [(15, 135, 20), (120, 1080, 230), (600, 600, 230), (1, 1, 1), (5, 500, 400), (700, 3, 350), (1200, 1200, 1199)],
)
@pytest.mark.parametrize("psi", [0.2, 1.0, 1.5, 15.0, 400.0])
def test_normalizer_matches_the_exact_sum(n1: int, n0: int, m: int, psi: float) -> None:
    constant = math.lgamma(n1 + 1) + math.lgamma(n0 + 1)  # dropped by the product code; cancels in ratios
    exact = brute_log_normalizer(n1, n0, m, math.log(psi))
    assert fnch_log_normalizer(n1, n0, m, math.log(psi)) + constant == pytest.approx(exact, abs=1e-9)


def test_ratios_are_the_ratio_of_probabilities() -> None:
    n1, n0, m, null = 12, 40, 9, 1.5
    alternatives = [null * 2, null * 10]
    for x in range(10):
        ratios = fnch_log_ratios(x, n1, n0, m, math.log(null), [math.log(a) for a in alternatives])
        for ratio, alternative in zip(ratios, alternatives, strict=True):
            expected = math.log(pmf(x, n1, n0, m, alternative) / pmf(x, n1, n0, m, null))
            assert ratio == pytest.approx(expected, abs=1e-8)
            assert ratio <= expected  # rounded towards the null, never above


@pytest.mark.parametrize("true_psi", [0.5, 1.0, 1.49, 1.5])
def test_expected_ratio_is_at_most_one_under_the_null(true_psi: float) -> None:
    """The supermartingale property behind Ville's inequality: E[LR] <= 1 whenever psi <= psi0."""
    n1, n0, m, null = 10, 30, 12, 1.5
    log_alternatives = [math.log(null * factor) for factor in (1.25, 2.0, 10.0)]
    for index in range(len(log_alternatives)):
        expected = sum(
            pmf(x, n1, n0, m, true_psi)
            * math.exp(fnch_log_ratios(x, n1, n0, m, math.log(null), log_alternatives)[index])
            for x in range(11)
        )
        assert expected <= 1.0 + 1e-12
        if true_psi < null:
            assert expected < 1.0


def test_a_table_with_one_possible_count_carries_no_evidence() -> None:
    assert fnch_log_ratios(0, 10, 10, 0, 0.5, [1.0, 2.0]) == [0.0, 0.0]
    assert fnch_log_ratios(5, 5, 0, 5, 0.5, [1.0]) == [0.0]
    assert fnch_log_ratios(0, 0, 10, 3, 0.5, [1.0]) == [0.0]
    assert fnch_log_ratios(20, 10, 10, 20, 0.5, [1.0]) == [0.0]


def test_binomial_ratios_by_hand_and_with_zero_counts() -> None:
    [ratio] = binomial_log_ratios(3, 10, 0.1, [0.3])
    assert ratio == pytest.approx(3 * math.log(3) + 7 * math.log(0.7 / 0.9))
    assert binomial_log_ratios(0, 0, 0.1, [0.3]) == [0.0]
    [none_above] = binomial_log_ratios(0, 100, 0.01, [0.02])
    assert none_above == pytest.approx(100 * math.log(0.98 / 0.99))
    [all_above] = binomial_log_ratios(5, 5, 0.5, [0.9])
    assert all_above == pytest.approx(5 * math.log(1.8))


@pytest.mark.parametrize(("trials", "delta"), [(20, 0.05), (200, 0.01), (50, 0.2)])
@pytest.mark.parametrize("share", [0.0, 0.01, 0.1, 0.5, 0.97])
def test_upper_bound_covers_the_true_share_with_probability_at_least_one_minus_delta(
    trials: int, delta: float, share: float
) -> None:
    missed = sum(
        math.comb(trials, k) * share**k * (1 - share) ** (trials - k)
        for k in range(trials + 1)
        if upper_confidence_bound(k, trials, delta) < share
    )
    assert missed <= delta


def test_upper_bound_edges() -> None:
    assert upper_confidence_bound(0, 0, 0.05) == 1.0
    assert upper_confidence_bound(10, 10, 0.05) == pytest.approx(1.0)
    assert 0 < upper_confidence_bound(0, 1000, 0.001) < 0.01


def test_log_mean_exp_is_stable() -> None:
    assert log_mean_exp([]) == -math.inf
    assert log_mean_exp([-math.inf, -math.inf]) == -math.inf
    assert log_mean_exp([1000.0, 1000.0]) == pytest.approx(1000.0)
    assert log_mean_exp([0.0, math.log(3.0)]) == pytest.approx(math.log(2.0))
    assert share_of_odds(odds(0.25)) == pytest.approx(0.25)
