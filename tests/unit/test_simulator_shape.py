"""The latency shape: its sampling against the analytic lognormal mixture, its streams, and its knobs."""

from __future__ import annotations

import bisect
import itertools
import math
import random
import statistics

import pytest

from performance_agent.simulator.cli import build_parser, main, shape_from_args
from performance_agent.simulator.exposition import Histogram
from performance_agent.simulator.shape import (
    SHAPE_PRESETS,
    LatencyShape,
    LatencyShaper,
    ShapeError,
    binomial,
    parse_shape,
    shape_stream,
)
from performance_agent.simulator.vllm_page import ITL_EDGES, TTFT_EDGES

HEAVY = SHAPE_PRESETS["heavy-tailed"]
SHAPES = [HEAVY, LatencyShape(sigma=0.8), LatencyShape(sigma=0.5), LatencyShape(slow_share=0.07, slow_factor=6.0)]


def quantile(shape: LatencyShape, q: float) -> float:
    """The analytic q-quantile of the multiplier, by bisection on the CDF in log space."""
    low, high = math.log(1e-6), math.log(1e6)
    for _ in range(200):
        middle = (low + high) / 2
        if shape.cdf(math.exp(middle)) < q:
            low = middle
        else:
            high = middle
    return math.exp(high)


def test_the_heavy_tailed_preset_is_sigma_half_with_seven_percent_six_times_slower() -> None:
    assert LatencyShape(sigma=0.5, slow_share=0.07, slow_factor=6.0) == HEAVY
    assert HEAVY.mean == pytest.approx(math.exp(0.125) * (0.93 + 0.07 * 6))
    assert SHAPE_PRESETS["none"].is_identity
    assert quantile(HEAVY, 0.5) == pytest.approx(1.0, abs=0.05)
    assert quantile(HEAVY, 0.99) == pytest.approx(10.23, abs=0.01)  # the slow requests make the tail


@pytest.mark.parametrize("shape", SHAPES, ids=["heavy", "sigma0.8", "sigma0.5", "mixture-only"])
def test_per_request_multipliers_match_the_analytic_quantiles(shape: LatencyShape) -> None:
    shaper = LatencyShaper(shape, random.Random(11))
    draws = sorted(shaper.request_scale() for _ in range(100_000))
    for q in (0.1, 0.5, 0.9, 0.95, 0.99):
        empirical = draws[int(q * len(draws))]
        expected = quantile(shape, q)
        if shape.sigma == 0.0:
            assert empirical == expected or (q >= 0.93 and empirical == shape.slow_factor)
        else:
            assert empirical == pytest.approx(expected, rel=0.04), q
    assert statistics.fmean(draws) == pytest.approx(shape.mean, rel=0.02)


def test_the_analytic_cdf_and_partial_mean_agree_with_numeric_integration() -> None:
    # E[M; M <= x] = integral of m dF(m): check on a fine log grid.
    x, grid = 3.0, [math.exp(-6 + i * 0.001) for i in range(int((6 + math.log(3.0)) / 0.001))]
    integral = sum((HEAVY.cdf(b) - HEAVY.cdf(a)) * math.sqrt(a * b) for a, b in itertools.pairwise(grid))
    assert integral == pytest.approx(HEAVY.partial_mean(x), rel=1e-3)
    assert HEAVY.partial_mean(1e9) == pytest.approx(HEAVY.mean)
    assert HEAVY.cdf(0.0) == 0.0
    assert HEAVY.cdf(1e9) == pytest.approx(1.0)


def bucket_shares(shape: LatencyShape, edges: tuple[float, ...], value: float) -> list[float]:
    cdf = [shape.cdf(edge / value) for edge in edges] + [1.0]
    return [b - a for a, b in itertools.pairwise([0.0, *cdf])]


@pytest.mark.parametrize("per_call", [1, 7, 60, 5_000], ids=["one", "few", "typical-step", "normal-approx"])
def test_spread_bucket_counts_follow_the_mixture_cdf_at_the_engine_edges(per_call: int) -> None:
    shaper, value = LatencyShaper(HEAVY, random.Random(5)), 0.0412
    histogram = Histogram(ITL_EDGES)
    calls = max(1, 200_000 // per_call)
    for call in range(calls):
        histogram.observe_weighted(value, per_call, shaper)
        if call % 7 == 6:
            shaper.flush()  # as a tick ends
    shaper.flush()
    total = calls * per_call
    assert histogram.count == sum(histogram.counts) == total
    total = histogram.count
    expected = bucket_shares(HEAVY, ITL_EDGES, value)
    for index, (count, share) in enumerate(zip(histogram.counts, expected, strict=True)):
        spread = 4 * math.sqrt(share * (1 - share) / total) + 0.002
        assert abs(count / total - share) < spread, (index, count / total, share)
    # _sum follows the buckets: mean observation = value * E[M] (the table's value is within 0.5%).
    assert histogram.total / total == pytest.approx(value * HEAVY.mean, rel=0.01)


def test_a_shape_without_spread_puts_tokens_at_exactly_two_values() -> None:
    shape = LatencyShape(slow_share=0.25, slow_factor=4.0)
    shaper, histogram = LatencyShaper(shape, random.Random(3)), Histogram(TTFT_EDGES)
    for _ in range(2_000):
        histogram.observe_weighted(0.03, 10, shaper)
    shaper.flush()
    fast, slow = bisect.bisect_left(TTFT_EDGES, 0.03), bisect.bisect_left(TTFT_EDGES, 0.12)
    assert {i for i, c in enumerate(histogram.counts) if c} == {fast, slow}
    assert histogram.counts[slow] / histogram.count == pytest.approx(0.25, abs=0.01)
    assert histogram.total == pytest.approx(0.03 * histogram.counts[fast] + 0.12 * histogram.counts[slow])


def test_no_shape_draws_nothing_and_observes_the_value_itself() -> None:
    rng = random.Random(1)
    before = rng.getstate()
    shaper, histogram = LatencyShaper(LatencyShape(), rng), Histogram(ITL_EDGES)
    assert [shaper.request_scale() for _ in range(10)] == [1.0] * 10
    histogram.observe_weighted(0.04, 12.5, shaper)
    assert rng.getstate() == before
    assert histogram.counts[bisect.bisect_left(ITL_EDGES, 0.04)] == 12
    assert histogram.carry == pytest.approx(0.5)


@pytest.mark.parametrize(("n", "p"), [(20, 0.1), (30, 0.45), (1_000, 0.3), (8, 0.9), (100_000, 1e-5)])
def test_binomial_draws_have_the_binomial_mean_and_variance(n: int, p: float) -> None:
    rng = random.Random(9)
    draws = [binomial(rng, n, p) for _ in range(40_000)]
    assert all(0 <= d <= n for d in draws)
    assert statistics.fmean(draws) == pytest.approx(n * p, rel=0.02, abs=0.02)
    assert statistics.pvariance(draws) == pytest.approx(n * p * (1 - p), rel=0.06, abs=0.02)


def test_binomial_edge_cases() -> None:
    rng = random.Random(0)
    assert [binomial(rng, 0, 0.5), binomial(rng, 10, 0.0), binomial(rng, 10, 1.0), binomial(rng, 10, 1.5)] == [
        0,
        0,
        10,
        10,
    ]


def test_streams_are_reproducible_per_seed_and_independent_between_servers() -> None:
    def draws(seed: int, instance_id: str) -> list[float]:
        shaper = LatencyShaper(HEAVY, shape_stream(seed, instance_id))
        return [math.log(shaper.request_scale()) for _ in range(20_000)]

    assert draws(3, "vllm-0") == draws(3, "vllm-0")
    for other in (draws(3, "vllm-1"), draws(4, "vllm-0")):
        assert other != draws(3, "vllm-0")
        assert abs(statistics.correlation(draws(3, "vllm-0"), other)) < 0.03


def test_parse_shape_applies_the_preset_then_the_overrides() -> None:
    shape, seed = parse_shape(LatencyShape(), {"preset": "heavy-tailed", "slow_factor": 4})
    assert (shape, seed) == (LatencyShape(0.5, 0.07, 4.0), None)
    shape, seed = parse_shape(shape, {"sigma": 0.8, "seed": 12})
    assert (shape, seed) == (LatencyShape(0.8, 0.07, 4.0), 12)
    assert parse_shape(shape, {"preset": "none"})[0].is_identity


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"spread": 1}, "unknown shape field(s) 'spread'"),
        ({"sigma": -0.1}, "sigma must be within [0.0, 3.0]"),
        ({"sigma": "wide"}, "sigma must be a number"),
        ({"sigma": math.nan}, "sigma must be a number"),
        ({"slow_share": 1.5}, "slow_share must be within [0.0, 1.0]"),
        ({"slow_factor": 0.5}, "slow_factor must be within [1.0, 1000.0]"),
        ({"slow_factor": True}, "slow_factor must be a number"),
        ({"preset": "spiky"}, "preset must be one of none, heavy-tailed"),
        ({"seed": -1}, "seed must be an integer"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_parse_shape_rejects_bad_values_with_the_field_named(body: dict[str, object], message: str) -> None:
    with pytest.raises(ShapeError) as raised:
        parse_shape(LatencyShape(), body)
    assert message in str(raised.value)


def test_cli_flags_build_the_shape_from_the_preset_and_overrides() -> None:
    parse = build_parser().parse_args
    assert shape_from_args(parse(["--engine", "vllm"])) == LatencyShape()
    assert shape_from_args(parse(["--engine", "vllm", "--latency-shape", "heavy-tailed"])) == HEAVY
    custom = parse(["--engine", "vllm", "--latency-shape", "heavy-tailed", "--slow-share", "0.1", "--slow-factor", "3"])
    assert shape_from_args(custom) == LatencyShape(0.5, 0.1, 3.0)
    assert shape_from_args(parse(["--engine", "tgi", "--latency-sigma", "0.8"])) == LatencyShape(sigma=0.8)


def test_cli_refuses_a_shape_out_of_range_before_listening(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--engine", "vllm", "--slow-share", "2"]) == 2
    assert "slow_share must be within [0.0, 1.0], got 2.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--engine", "vllm", "--latency-shape", "spiky"])
