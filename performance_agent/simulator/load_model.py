"""A continuous-batching server as a fluid, event-stepped queueing model (pure, seeded, no I/O).

Time advances in fixed ticks of simulated seconds (so the result depends only on how much time
has passed, not on how often someone looked). Inside a tick the model moves from event to event
(an arrival, a prefill finishing, a request finishing, the KV pool filling up); between events
the batch composition is constant, so every quantity is exact arithmetic on one step time:

    step_s = (overhead + max(memory_bytes / bandwidth, 2 * params * tokens_in_step / flops)) * regression
    memory_bytes = weights * (1 + dequant_overhead) + kv_tokens_in_use * kv_bytes_per_token

Each step decodes one token for every decoding request and spends what is left of the token
budget (`max_num_batched_tokens`-like) on prefill, first come first served. Decoding progress is
kept as a single virtual counter `D` (tokens each decoding request has produced since the model
started), so KV in use is `Σ prompt_prefilling + n_decode * D + Σ (context0 - D0)` in O(1), and
finishing times sit in a heap keyed by `D`. Admission follows the engine: vLLM allocates the
prompt's blocks (1% watermark) and preempts the newest request when decode growth overflows the
pool; SGLang also reserves `0.7 * conservativeness` of the remaining output, so it retracts less;
TGI reserves prompt + max_new_tokens up front and never preempts, but rejects arrivals beyond
`max_concurrent_requests`. Queueing, Little's law (running ≈ throughput * latency) and KV
usage (= tokens held / pool) are consequences, not inputs.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from performance_agent.simulator.knobs import EngineParams, Hardware
    from performance_agent.simulator.shape import LatencyShaper

__all__ = ("EventSink", "LoadModel", "ModelGauges", "SimRequest", "Workload")

_EPS = 1e-9
_MAX_SEGMENTS_PER_TICK = 20_000


@dataclass(frozen=True, slots=True)
class Workload:
    """Offered load: Poisson arrivals, log-normal prompt and output lengths, a shared-prefix share."""

    arrival_rate_per_s: float = 8.0
    prompt_tokens_mean: float = 512.0
    output_tokens_mean: float = 256.0
    length_sigma: float = 0.6
    max_tokens: int = 1024
    prefix_share: float = 0.3


@dataclass(slots=True, eq=False)
class SimRequest:
    """One request's life; times are simulated seconds since the model (re)started."""

    arrival: float
    prompt: int
    target_output: int
    max_tokens: int
    truncated: bool
    cached: int = 0
    admitted_at: float = -1.0
    scheduled_at: float = -1.0
    first_token_at: float = -1.0
    finished_at: float = -1.0
    generated: int = 0
    prefill_remaining: float = 0.0
    held_tokens: int = 0
    decode_start: float = 0.0
    context_start: int = 0
    finish_mark: float = 0.0
    preemptions: int = 0
    reserved: float = 0.0
    sequence: int = 0
    state: str = "waiting"
    latency_scale: float = 1.0  # the latency shape's multiplier of every reported duration
    ttft_scale: float = 1.0  # a TTFT regression's multiplier of the time before the first token

    def span(self, start: float, end: float) -> float:
        """The reported duration between two moments of this request's life.

        The latency shape stretches the whole timeline by `latency_scale`; a TTFT regression also
        stretches the part before the first token by `ttft_scale`, so queue, prefill, TTFT and e2e
        move together and decode does not. Unstretched, it is exactly `end - start`.
        """
        if self.ttft_scale == 1.0:
            return end - start if self.latency_scale == 1.0 else (end - start) * self.latency_scale
        return self._stretched(end) - self._stretched(start)

    def _stretched(self, at: float) -> float:
        first = self.first_token_at if self.first_token_at >= 0 else math.inf
        return ((min(at, first) - self.arrival) * self.ttft_scale + max(at - first, 0.0)) * self.latency_scale


class EventSink(Protocol):
    """What an engine's metric set hears from the model (each engine records what it exposes).

    `shaper` (set by the instance) spreads per-token latency observations over the latency shape.
    """

    shaper: LatencyShaper | None

    def on_arrival(self, request: SimRequest) -> None: ...
    def on_rejected(self, request: SimRequest, reason: str) -> None: ...
    def on_admitted(self, request: SimRequest, now: float, batch_was_busy: bool) -> None: ...
    def on_first_token(self, request: SimRequest) -> None: ...
    def on_steps(self, n_decode: int, prefill_tokens: float, step_s: float, steps: float) -> None: ...
    def on_preempted(self, request: SimRequest) -> None: ...
    def on_finished(self, request: SimRequest) -> None: ...


@dataclass(frozen=True, slots=True)
class ModelGauges:
    """Instantaneous state, as the engine's gauges would show it."""

    running: int
    waiting: int
    kv_used_tokens: int
    kv_capacity_tokens: int
    reserved_tokens: int
    generation_tokens_per_s: float
    recent_cache_hit_rate: float
    recent_preemptions: int


@dataclass(slots=True)
class _Decoding:
    heap: list[tuple[float, int, SimRequest]] = field(default_factory=list)
    count: int = 0
    base: float = 0.0  # Σ (context_start - decode_start) over decoding requests


class LoadModel:
    """One engine rank under load; call `advance(seconds)` and read `gauges()`."""

    def __init__(
        self,
        params: EngineParams,
        hardware: Hardware,
        workload: Workload,
        sink: EventSink,
        seed: int,
        tick_s: float = 0.5,
        shaper: LatencyShaper | None = None,
    ) -> None:
        self.params = params
        self.hardware = hardware
        self.workload = workload
        self.sink = sink
        self.tick_s = tick_s
        self.shaper = shaper
        self.latency_factor = 1.0
        self.ttft_factor = 1.0
        self.error_fraction = 0.0
        self.pinned_tokens = 0
        self.now = 0.0
        self._rng = random.Random(seed)
        self._pending: float = 0.0  # simulated time not yet simulated (less than one tick)
        self._waiting: deque[SimRequest] = deque()
        self._prefilling: deque[SimRequest] = deque()
        self._running: dict[int, SimRequest] = {}  # admission order, newest last (preemption victim)
        self._decoding = _Decoding()
        self._mark = 0.0  # the virtual decode counter D
        self._prefill_held = 0
        self._prefill_pending = 0.0  # sum of prefill_remaining over prefilling requests
        self._reserved = 0.0
        self._sequence = 0
        self._tick_generated = 0.0
        self._tick_queries = 0
        self._tick_hits = 0
        self._tick_preemptions = 0
        self._last = (0.0, 0.0, 0)

    # ----------------------------------------------------------------------------- public
    def advance(self, seconds: float) -> None:
        """Simulate `seconds` more; whole ticks only, the remainder waits for the next call."""
        if seconds <= 0:
            return
        self._pending += seconds
        while self._pending >= self.tick_s - _EPS:
            self._pending -= self.tick_s
            self._tick(self.now, self.now + self.tick_s)
            self.now += self.tick_s

    def gauges(self) -> ModelGauges:
        generated, hit_rate, preempted = self._last
        return ModelGauges(
            running=len(self._running),
            waiting=len(self._waiting),
            kv_used_tokens=round(self._kv_used()),
            kv_capacity_tokens=self.params.kv_capacity_tokens,
            reserved_tokens=round(self._reserved),
            generation_tokens_per_s=generated / self.tick_s,
            recent_cache_hit_rate=hit_rate,
            recent_preemptions=preempted,
        )

    def step_time(self, n_decode: int, prefill_tokens: float, kv_tokens: float) -> float:
        p = self.params
        memory_s = (p.weight_bytes * (1.0 + p.weight_read_overhead) + kv_tokens * p.kv_bytes_per_token) / (
            p.bandwidth_bytes_s
        )
        compute_s = 2.0 * p.params * (n_decode + prefill_tokens) / p.compute_flops_s
        return (self.hardware.step_overhead_s + max(memory_s, compute_s)) * self.latency_factor

    def reconfigure(self, params: EngineParams) -> None:
        """A live flag change (test shortcut): running work stays, the new limits apply from now."""
        self.params = params
        self._preempt_overflow()

    # ---------------------------------------------------------------------------- arrivals
    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 30:
            return max(0, round(self._rng.gauss(mean, math.sqrt(mean))))
        limit, product, k = math.exp(-mean), self._rng.random(), 0
        while product > limit:
            product *= self._rng.random()
            k += 1
        return k

    def _length(self, mean: float) -> int:
        sigma = self.workload.length_sigma
        return max(1, round(self._rng.lognormvariate(math.log(max(mean, 1.0)) - sigma * sigma / 2, sigma)))

    def _arrivals(self, start: float, end: float) -> list[SimRequest]:
        w, p = self.workload, self.params
        times = sorted(
            start + self._rng.random() * (end - start)
            for _ in range(self._poisson(w.arrival_rate_per_s * (end - start)))
        )
        out = []
        for at in times:
            prompt = self._length(w.prompt_tokens_mean)
            wanted = self._length(w.output_tokens_mean)
            limit = max(1, min(w.max_tokens, p.max_model_len - min(prompt, p.max_model_len - 1)))
            out.append(SimRequest(at, prompt, min(wanted, limit), limit, wanted >= limit))
        return out

    def _arrive(self, request: SimRequest) -> None:
        p = self.params
        self.sink.on_arrival(request)
        if p.max_in_system is not None and len(self._waiting) + len(self._running) >= p.max_in_system:
            self.sink.on_rejected(request, "overloaded")
        elif request.prompt > p.max_input_tokens:
            self.sink.on_rejected(request, "validation")
        elif self.error_fraction > 0 and self._rng.random() < self.error_fraction:
            request.finished_at = request.arrival
            self.sink.on_rejected(request, "error")
        else:
            if self.shaper is not None:
                request.latency_scale = self.shaper.request_scale()
            request.ttft_scale = self.ttft_factor
            self._waiting.append(request)

    # --------------------------------------------------------------------------- admission
    def _kv_used(self) -> float:
        d = self._decoding
        return self._prefill_held + d.count * self._mark + d.base + self.pinned_tokens

    def _fits(self, request: SimRequest) -> bool:
        p = self.params
        need = request.prompt + request.generated
        if p.admission == "reserve_full":
            return self._reserved + request.prompt + request.max_tokens <= p.kv_capacity_tokens
        extra = p.reserve_ratio * max(request.target_output - request.generated, 0)
        limit = p.kv_capacity_tokens * (0.99 if p.admission == "allocate" else 1.0)
        return self._kv_used() + self._reserved + need + extra <= limit

    def _admit(self, now: float) -> None:
        p = self.params
        while self._waiting and self._waiting[0].arrival <= now + _EPS and len(self._running) < p.max_running:
            request = self._waiting[0]
            alone = request.prompt + (request.max_tokens if p.admission == "reserve_full" else request.target_output)
            if alone + self.pinned_tokens > p.kv_capacity_tokens:
                self._waiting.popleft()
                request.finished_at = now
                self.sink.on_rejected(request, "error")
                continue
            if not self._fits(request):
                return
            self._waiting.popleft()
            busy = bool(self._running)
            self._sequence += 1
            request.sequence, request.state, request.scheduled_at = self._sequence, "prefilling", now
            if request.admitted_at < 0:
                request.admitted_at = now
                if p.prefix_caching:
                    request.cached = int(request.prompt * self.workload.prefix_share)
                self._tick_queries += request.prompt
                self._tick_hits += request.cached
            request.held_tokens = request.prompt + request.generated
            request.prefill_remaining = float(max(request.held_tokens - request.cached, 1))
            if p.admission == "reserve_full":
                request.reserved = request.prompt + request.max_tokens
            elif p.admission == "reserve_ratio":
                request.reserved = p.reserve_ratio * max(request.target_output - request.generated, 0)
            self._reserved += request.reserved
            self._prefill_held += request.held_tokens
            self._prefill_pending += request.prefill_remaining
            self._running[request.sequence] = request
            self._prefilling.append(request)
            self.sink.on_admitted(request, now, busy)

    # ------------------------------------------------------------------------------ events
    def _start_decoding(self, request: SimRequest, now: float) -> None:
        self._prefilling.popleft()
        self._prefill_held -= request.held_tokens
        self._prefill_pending = max(self._prefill_pending - request.prefill_remaining, 0.0) if self._prefilling else 0.0
        request.generated += 1  # the prefill step emits the first token
        if request.first_token_at < 0:
            request.first_token_at = now
            self.sink.on_first_token(request)
        if request.generated >= request.target_output:
            self._finish(request, now)
            return
        request.state = "decoding"
        request.decode_start = self._mark
        request.context_start = request.prompt + request.generated
        request.finish_mark = self._mark + (request.target_output - request.generated)
        d = self._decoding
        d.count += 1
        d.base += request.context_start - request.decode_start
        heapq.heappush(d.heap, (request.finish_mark, request.sequence, request))

    def _leave_decoding(self, request: SimRequest) -> None:
        d = self._decoding
        d.count -= 1
        d.base -= request.context_start - request.decode_start
        request.generated = min(request.target_output, request.generated + int(self._mark - request.decode_start))

    def _finish(self, request: SimRequest, now: float) -> None:
        if request.state == "decoding":
            self._leave_decoding(request)
            request.generated = request.target_output
        request.state, request.finished_at = "finished", now
        self._release(request)
        self.sink.on_finished(request)

    def _release(self, request: SimRequest) -> None:
        del self._running[request.sequence]
        self._reserved -= request.reserved
        request.reserved = 0.0

    def _preempt_overflow(self) -> None:
        if self.params.admission == "reserve_full":
            return
        while self._running and self._kv_used() > self.params.kv_capacity_tokens + _EPS:
            victim = self._running[next(reversed(self._running))]
            if victim.state == "decoding":
                self._leave_decoding(victim)
            else:
                self._prefilling.remove(victim)
                self._prefill_held -= victim.held_tokens
                self._prefill_pending = max(self._prefill_pending - victim.prefill_remaining, 0.0)
            self._release(victim)
            victim.state, victim.preemptions = "waiting", victim.preemptions + 1
            self._tick_preemptions += 1
            self._waiting.appendleft(victim)
            self.sink.on_preempted(victim)

    def _process_events(self, now: float) -> None:
        while self._prefilling and self._prefilling[0].prefill_remaining <= _EPS:
            self._start_decoding(self._prefilling[0], now)
        heap = self._decoding.heap
        while heap and (heap[0][2].state != "decoding" or heap[0][0] <= self._mark + _EPS):
            mark, _, request = heapq.heappop(heap)
            if request.state == "decoding" and request.finish_mark == mark:  # else: stale entry
                self._finish(request, now)
        self._preempt_overflow()

    # -------------------------------------------------------------------------------- ticks
    def _tick(self, start: float, end: float) -> None:
        self._tick_generated, self._tick_queries, self._tick_hits, self._tick_preemptions = 0.0, 0, 0, 0
        arrivals = deque(self._arrivals(start, end))
        now = start
        for _ in range(_MAX_SEGMENTS_PER_TICK):
            while arrivals and arrivals[0].arrival <= now + _EPS:
                self._arrive(arrivals.popleft())
            self._process_events(now)
            self._admit(now)
            next_arrival = arrivals[0].arrival if arrivals else end
            if now >= end - _EPS:
                break
            if not self._running:
                now = min(next_arrival, end)
                continue
            now = self._run_segment(now, min(next_arrival, end))
        if self.shaper is not None:
            self.shaper.flush()  # shaped token latencies reach their buckets with the tick's other counters
        hit_rate = self._tick_hits / self._tick_queries if self._tick_queries else self._last[1]
        self._last = (self._tick_generated, hit_rate, self._tick_preemptions)

    def _run_segment(self, now: float, horizon: float) -> float:
        p, d = self.params, self._decoding
        if not self._prefilling:
            # Float residue of finished prefills must not look like pending work with no request behind it.
            self._prefill_pending = 0.0
        prefill = min(max(p.token_budget - d.count, 0), self._prefill_pending)
        if d.count == 0 and prefill <= 0:
            return horizon
        step = self.step_time(d.count, prefill, self._kv_used() - self.pinned_tokens)
        length = horizon - now
        if prefill > 0:
            length = min(length, self._prefilling[0].prefill_remaining / (prefill / step))
        if d.count > 0:
            length = min(length, max(d.heap[0][0] - self._mark, 0.0) * step)
            room = self.params.kv_capacity_tokens - self._kv_used()
            if self.params.admission != "reserve_full" and room > 0:
                length = min(length, room / d.count * step + _EPS)
        length = max(length, _EPS)
        steps = length / step
        if prefill > 0:
            self._prefilling[0].prefill_remaining -= prefill * steps
            self._prefill_pending -= prefill * steps
        if d.count > 0:
            self._mark += steps
            self._tick_generated += d.count * steps
        self.sink.on_steps(d.count, prefill, step, steps)
        return now + length
