"""Likelihood ratios the judge multiplies window after window, computed in log space.

Two families, both exact for the counts they see:

* Fisher's noncentral hypergeometric distribution (FNCH): in a 2x2 table with fixed margins
  (canary requests n1, reference requests n0, requests above an edge m), the canary's count above
  the edge has probability proportional to C(n1, x) C(n0, m - x) psi^x, whatever the two
  cohorts' traffic and whatever the shared load did to both. psi is the odds ratio.
* The binomial, for one-sample questions (a share against a fixed allowed share) and for
  conditional Poisson counts (the canary's part of the pooled errors or requests).

For the alternatives psi1 > psi0 (or p1 > p0) the ratio has expectation <= 1 under every null
value <= psi0 (monotone likelihood ratio), so a running product is a test supermartingale.
"""

from __future__ import annotations

import math
from itertools import accumulate, takewhile
from operator import mul, truediv
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = (
    "binomial_log_ratios",
    "fnch_log_normalizer",
    "fnch_log_ratios",
    "log_mean_exp",
    "logit",
    "odds",
    "share_of_odds",
    "upper_confidence_bound",
)

# Terms below this share of the largest one are dropped: the relative error of a normalizer is
# then below ~1e-11, far under anything a threshold of e^5 can notice.
_TRUNCATION = 1e-12
_ROUNDING_SLACK = 1e-9


def odds(share: float) -> float:
    return share / (1.0 - share)


def logit(share: float) -> float:
    return math.log(share) - math.log1p(-share)


def share_of_odds(value: float) -> float:
    return value / (1.0 + value)


def log_mean_exp(values: Sequence[float]) -> float:
    """log(mean(exp(values))) without overflow; -inf for an empty list."""
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum([math.exp(value - top) for value in values]) / len(values))


def _log_h(n1: int, n0: int, m: int, x: int) -> float:
    """log C(n1, x) C(n0, m - x) up to a constant that cancels in every ratio used here."""
    return -(math.lgamma(x + 1) + math.lgamma(n1 - x + 1) + math.lgamma(m - x + 1) + math.lgamma(n0 - m + x + 1))


def _approximate_mean(n1: int, n0: int, m: int, psi: float) -> float:
    """Cornfield's approximation of the FNCH mean: where psi (n1-x)(m-x) = x (n0-m+x)."""
    if psi == 1.0:
        return n1 * m / (n1 + n0)
    a = 1.0 - psi
    b = n0 - m + psi * (n1 + m)
    c = -psi * n1 * m
    disc = max(b * b - 4.0 * a * c, 0.0)
    # The numerically stable root of a x^2 + b x + c = 0 that lies in [0, min(n1, m)].
    return (2.0 * -c) / (b + math.sqrt(disc))


def fnch_log_normalizer(n1: int, n0: int, m: int, log_psi: float) -> float:
    """log sum_x exp(_log_h(x) + x log_psi), summed outwards from the mean until terms vanish.

    The terms are log-concave in x, so starting at the mean (next to the mode) and stopping once a
    term falls below 1e-12 of the first drops a tail that is geometrically smaller still. The
    running products are lazy C-level iterators: the cost grows with the standard deviation of
    the count (about 15 of them are visited), not with the number of requests, and this runs for
    every edge and alternative of every judged window.
    """
    low, high = max(0, m - n0), min(n1, m)
    psi = math.exp(log_psi)
    centre = min(max(round(_approximate_mean(n1, n0, m, psi)), low), high)
    rest = n0 - m
    up = map(
        truediv,
        map(mul, range(n1 - centre, n1 - high, -1), range(m - centre, m - high, -1)),
        map(mul, range(centre + 1, high + 1), range(rest + centre + 1, rest + high + 1)),
    )
    down = map(
        truediv,
        map(mul, range(centre, low, -1), range(rest + centre, rest + low, -1)),
        map(mul, range(n1 - centre + 1, n1 - low + 1), range(m - centre + 1, m - low + 1)),
    )
    rising = sum(takewhile(_TRUNCATION.__lt__, accumulate(map(psi.__mul__, up), mul)))
    falling = sum(takewhile(_TRUNCATION.__lt__, accumulate(map((1.0 / psi).__mul__, down), mul)))
    return _log_h(n1, n0, m, centre) + centre * log_psi + math.log(1.0 + rising + falling)


def fnch_log_ratios(
    x: int, n1: int, n0: int, m: int, log_psi_null: float, log_psi_alternatives: Sequence[float]
) -> list[float]:
    """log P(x | psi1) / P(x | psi0) for each alternative; zeros for a table with one possible x.

    Each ratio is lowered by 1e-9 so that the truncated normalizers (relative error < 1e-11)
    can only understate the evidence.
    """
    if min(n1, m) <= max(0, m - n0):
        return [0.0] * len(log_psi_alternatives)
    null = fnch_log_normalizer(n1, n0, m, log_psi_null)
    return [
        x * (log_psi - log_psi_null) - (fnch_log_normalizer(n1, n0, m, log_psi) - null) - _ROUNDING_SLACK
        for log_psi in log_psi_alternatives
    ]


def binomial_log_ratios(successes: float, trials: float, null: float, alternatives: Sequence[float]) -> list[float]:
    """log of p1^k (1-p1)^(n-k) / p0^k (1-p0)^(n-k) for each alternative share p1."""
    failures = trials - successes
    log_null, log_null_complement = math.log(null), math.log1p(-null)
    ratios = []
    for share in alternatives:
        value = 0.0
        if successes > 0:
            value += successes * (math.log(share) - log_null)
        if failures > 0:
            value += failures * (math.log1p(-share) - log_null_complement)
        ratios.append(value)
    return ratios


def _kl_bernoulli(p: float, q: float) -> float:
    value = 0.0
    if p > 0:
        value += p * math.log(p / q)
    if p < 1:
        value += (1 - p) * math.log((1 - p) / (1 - q))
    return value


def upper_confidence_bound(successes: float, trials: float, delta: float) -> float:
    """Chernoff upper bound: P(true share > bound) <= delta for k successes in n Bernoulli trials.

    The largest q with n KL(k/n || q) <= log(1/delta), found by bisection. Used once per plan on
    the pre-rollout baseline, never re-used as if it were fresh data.
    """
    if trials <= 0:
        return 1.0
    observed = min(max(successes / trials, 0.0), 1.0)
    budget = math.log(1.0 / delta) / trials
    low, high = observed, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if middle >= 1.0 or _kl_bernoulli(observed, middle) > budget:
            high = middle
        else:
            low = middle
    return high
