"""Latency shape: how spread out and how heavy-tailed a simulated server's reported latencies are.

The load model is a fluid queueing model: two requests with the same lengths arriving into the
same batch get the same latency. Real servers are noisier: TTFT and e2e spread roughly
lognormally around the typical value, and a small share of requests is much slower (long prompts,
prefix-cache misses, a stalled batch). A shape adds that on top of the model, as a multiplier of
every reported latency:

    M = L * B,  L ~ LogNormal(0, sigma)  (median 1),  B = slow_factor with probability slow_share, else 1

The shape changes what the server *reports*, never how long a request occupies it: queueing, KV
usage, throughput and every counter still come from the load model, so a shape never moves
capacity. Per request, one M is drawn when the request enters the queue and scales its whole
timeline (queue, prefill, TTFT, decode, e2e, per-request TPOT), so the phases stay consistent.
Inter-token latency is observed per decode step for many tokens at once (`n_decode * steps`
observations of one step time); drawing an M per token would cost one draw per generated token,
so each observation's tokens are spread over the histogram's own buckets instead: bucket
probabilities come from the mixture's CDF (two `math.erf` per edge, cached per edge set and step
time to within 0.5%), the expected counts accumulate, and at the end of each load-model tick
(when every other counter moves too) one multinomial draw (sequential binomials) turns the
tick's whole tokens into bucket counts. The histogram's `_sum` grows by each bucket's count times
the conditional mean of the observed value in that bucket, so sum and buckets agree.

Each instance owns one `random.Random` stream, seeded from the instance's seed and id (or a
seed set over the control API), separate from the load model's stream: turning a shape on or off
does not change arrivals or lengths, servers with different ids draw independent streams, and the
same seed replays the same draws. With no shape (`sigma` 0, no slow share) nothing is drawn at
all, so an unshaped server behaves exactly as before the knob existed.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from performance_agent.simulator.exposition import Histogram

__all__ = (
    "SHAPE_PRESETS",
    "LatencyShape",
    "LatencyShaper",
    "PendingTokens",
    "ShapeError",
    "binomial",
    "parse_shape",
    "shape_stream",
)

_SQRT2 = math.sqrt(2.0)
_CACHE_STEPS_PER_E = 200  # step times sharing one bucket table are within 0.5% of each other
_CACHE_LIMIT = 4096
_TAIL_Z = 9.0  # beyond nine standard deviations the normal CDF is 0 or 1 in double precision
_SMALL_MEAN = 12.0  # below this binomial mean: exact inversion, above: normal approximation


@dataclass(frozen=True, slots=True)
class LatencyShape:
    """The multiplier's parameters; the default is no shape (every multiplier is exactly 1)."""

    sigma: float = 0.0
    slow_share: float = 0.0
    slow_factor: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self.sigma == 0.0 and (self.slow_share == 0.0 or self.slow_factor == 1.0)

    @property
    def mean(self) -> float:
        """E[M]: the factor by which a shape raises mean latency (sigma 0.5, 7% x6: 1.53)."""
        return math.exp(self.sigma * self.sigma / 2) * (1.0 - self.slow_share + self.slow_share * self.slow_factor)

    def cdf(self, x: float) -> float:
        """P(M <= x)."""
        if x <= 0.0:
            return 0.0
        fast, slow = 1.0 - self.slow_share, self.slow_share
        if self.sigma == 0.0:
            return fast * (x >= 1.0) + slow * (self.slow_factor <= x)
        log_x = math.log(x)
        return fast * _phi(log_x / self.sigma) + slow * _phi((log_x - math.log(self.slow_factor)) / self.sigma)

    def partial_mean(self, x: float) -> float:
        """E[M; M <= x] (the lognormal's partial expectation, per mixture component)."""
        if x <= 0.0:
            return 0.0
        fast, slow, factor, sigma = 1.0 - self.slow_share, self.slow_share, self.slow_factor, self.sigma
        if sigma == 0.0:
            return fast * (x >= 1.0) + slow * factor * (factor <= x)
        log_x, lift = math.log(x), math.exp(sigma * sigma / 2)
        return lift * (
            fast * _phi((log_x - sigma * sigma) / sigma)
            + slow * factor * _phi((log_x - math.log(factor) - sigma * sigma) / sigma)
        )

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


#: Named shapes. `heavy-tailed` is the shape issue 10 judges rollouts on: lognormal sigma 0.5
#: with 7% of requests 6x slower (its mean is 1.53x the model's, its p99 10.2x its median).
SHAPE_PRESETS: dict[str, LatencyShape] = {
    "none": LatencyShape(),
    "heavy-tailed": LatencyShape(sigma=0.5, slow_share=0.07, slow_factor=6.0),
}

_LIMITS = {"sigma": (0.0, 3.0), "slow_share": (0.0, 1.0), "slow_factor": (1.0, 1000.0)}
_SEED_LIMIT = 2**63


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / _SQRT2))


class ShapeError(ValueError):
    """A shape request that cannot be honoured; the message says which field and why."""


def _bounded(key: str, value: object) -> float:
    low, high = _LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ShapeError(f"{key} must be a number within [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ShapeError(f"{key} must be within [{low}, {high}], got {value}")
    return float(value)


def parse_shape(current: LatencyShape, body: dict[str, object]) -> tuple[LatencyShape, int | None]:
    """Apply a shape request: `preset` first (if given), then any of `sigma`, `slow_share`, `slow_factor`.

    Returns the new shape and the new stream seed (None: keep the stream). Raises `ShapeError`.
    """
    known = ("preset", *_LIMITS, "seed")
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise ShapeError(f"unknown shape field(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    shape = current
    if "preset" in body:
        preset = body["preset"]
        if not isinstance(preset, str) or preset not in SHAPE_PRESETS:
            raise ShapeError(f"preset must be one of {', '.join(SHAPE_PRESETS)}, got {preset!r}")
        shape = SHAPE_PRESETS[preset]
    changes = {key: _bounded(key, body[key]) for key in _LIMITS if key in body}
    shape = dataclasses.replace(shape, **changes)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _SEED_LIMIT):
        raise ShapeError(f"seed must be an integer within [0, 2**63), got {seed!r}")
    return shape, seed


def shape_stream(seed: int, instance_id: str) -> random.Random:
    """The instance's own stream: string seeds go through SHA-512, so ids give independent streams."""
    return random.Random(f"latency-shape:{seed}:{instance_id}")


def binomial(rng: random.Random, n: int, p: float) -> int:
    """One Binomial(n, p) draw (Python 3.11 has no `random.binomialvariate`).

    Exact inversion while the mean is small (expected cost: mean + 1 uniforms), a rounded normal
    draw above it (mean >= 12 and p <= 1/2 keep the variance >= 6, where its error is a fraction
    of one count): cheap whatever n is.
    """
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    flip = p > 0.5
    if flip:
        p = 1.0 - p
    mean = n * p
    if mean >= _SMALL_MEAN:
        x = min(n, max(0, round(rng.gauss(mean, math.sqrt(mean * (1.0 - p))))))
    else:
        q = 1.0 - p
        ratio, scale = p / q, (n + 1) * p / q
        mass, u, x = q**n, rng.random(), 0
        while u > mass and x < n:
            u -= mass
            x += 1
            mass *= scale / x - ratio
    return n - x if flip else x


# A bucket table: for each bucket the mixture can reach, (bucket index, probability, conditional
# mean of the observed value in that bucket).
_Table = tuple[tuple[int, float, float], ...]


@dataclass(slots=True)
class PendingTokens:
    """Token observations of one histogram not yet drawn into bucket counts.

    `weights[i]` is the expected number of pending tokens in bucket i, `sums[i]` their expected
    sum of values, `total` the pending tokens (fractional, like a histogram's carry).
    """

    weights: list[float]
    sums: list[float]
    total: float = 0.0


class LatencyShaper:
    """One instance's shape and random stream, shared by its load models and metric sets.

    Mutable on purpose: the instance swaps `shape` (or the stream) when the control API changes
    it, and every rank sees the change at once.
    """

    __slots__ = ("_dirty", "_rng", "_shape", "_tables")

    def __init__(self, shape: LatencyShape, rng: random.Random) -> None:
        self._shape, self._rng = shape, rng
        self._tables: dict[tuple[tuple[float, ...], int], _Table] = {}
        self._dirty: dict[int, Histogram] = {}  # histograms with pending tokens, in first-touched order

    @property
    def shape(self) -> LatencyShape:
        return self._shape

    def reshape(self, shape: LatencyShape, rng: random.Random | None = None) -> None:
        self._shape, self._tables = shape, {}
        if rng is not None:
            self._rng = rng

    @property
    def is_identity(self) -> bool:
        return self._shape.is_identity

    def request_scale(self) -> float:
        """One request's multiplier M (exactly 1, with no draw, when there is no shape)."""
        shape = self._shape
        if shape.is_identity:
            return 1.0
        scale = math.exp(shape.sigma * self._rng.gauss(0.0, 1.0)) if shape.sigma else 1.0
        if shape.slow_share and self._rng.random() < shape.slow_share:
            scale *= shape.slow_factor
        return scale

    def add_tokens(self, histogram: Histogram, value: float, weight: float) -> None:
        """`weight` observations of `value`, each times its own M: spread their expectation over the buckets.

        They stay pending until `flush()` (the load model calls it at the end of every tick, when
        all its counters move anyway), which draws each histogram's whole pending tokens at once:
        one multinomial per histogram and tick instead of one per decode step. Expected counts are
        exact; the variance is at most a multinomial's.
        """
        pending = histogram.pending
        if pending is None:
            size = len(histogram.edges) + 1
            pending = histogram.pending = PendingTokens([0.0] * size, [0.0] * size)
        self._dirty[id(histogram)] = histogram
        edges = histogram.edges
        if value > 0.0:
            for index, probability, mean in self._table(edges, value):
                pending.weights[index] += weight * probability
                pending.sums[index] += weight * probability * mean
        else:
            pending.weights[0] += weight
        pending.total += weight

    def flush(self) -> None:
        """Draw the pending tokens of every histogram touched since the last flush into its counts."""
        for histogram in self._dirty.values():
            if histogram.pending is not None:
                histogram.add_drawn(self.draw(histogram.pending))
        self._dirty.clear()

    def draw(self, pending: PendingTokens) -> tuple[list[tuple[int, int]], int, float] | None:
        """Draw the whole pending tokens into bucket counts; the fraction left stays pending."""
        whole = int(pending.total + 1e-9)
        if whole <= 0:
            return None
        out: list[tuple[int, int]] = []
        total, left, mass = 0.0, whole, pending.total
        for index, weight in enumerate(pending.weights):
            if weight <= 0.0:
                continue
            drawn = binomial(self._rng, left, weight / mass) if mass > weight else left
            mass -= weight
            if drawn:
                out.append((index, drawn))
                total += drawn * pending.sums[index] / weight
                left -= drawn
                if not left:
                    break
        keep = (pending.total - whole) / pending.total
        pending.weights = [w * keep for w in pending.weights]
        pending.sums = [v * keep for v in pending.sums]
        pending.total -= whole
        return out, whole, total

    def _table(self, edges: tuple[float, ...], value: float) -> _Table:
        if self._shape.sigma == 0.0:  # two point masses: exact, no rounding of the value
            return self._build(edges, value)
        step = round(math.log(value) * _CACHE_STEPS_PER_E)
        key = (edges, step)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) >= _CACHE_LIMIT:
                self._tables.clear()
            table = self._tables[key] = self._build(edges, math.exp(step / _CACHE_STEPS_PER_E))
        return table

    def _build(self, edges: tuple[float, ...], value: float) -> _Table:
        shape = self._shape
        low = value * math.exp(-_TAIL_Z * shape.sigma)
        high = value * shape.slow_factor * math.exp(_TAIL_Z * shape.sigma)
        rows: list[tuple[int, float, float]] = []
        below_p, below_m = 0.0, 0.0
        for index in range(len(edges) + 1):
            edge = edges[index] if index < len(edges) else math.inf
            if edge < low:
                continue
            if edge == math.inf or edge > high:
                cdf, partial = 1.0, shape.mean
            else:
                cdf, partial = shape.cdf(edge / value), shape.partial_mean(edge / value)
            mass = cdf - below_p
            if mass > 1e-15:
                rows.append((index, mass, value * (partial - below_m) / mass))
            below_p, below_m = cdf, partial
            if cdf >= 1.0:
                break
        return tuple(rows)
