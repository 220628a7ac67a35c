"""Latency shapes on a simulated server: what they change on the page, the control API, and regressions on top."""

from __future__ import annotations

import json

import pytest

from performance_agent.simulator import SHAPE_PRESETS, LatencyShape, ManualClock, SimulatedInstance, SimulatedServerSpec
from performance_agent.simulator.instance import REGRESSION_ENV, TTFT_REGRESSION_ENV
from performance_agent.simulator.load_model import Workload
from tests.unit.test_simulator_load_model import Values, mean, scrape, total

HEAVY = SHAPE_PRESETS["heavy-tailed"]
TTFT, E2E, QUEUE = (
    "vllm:time_to_first_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
)
ITL, TPOT = "vllm:inter_token_latency_seconds", "vllm:request_time_per_output_token_seconds"


def server(
    engine: str = "vllm",
    *,
    rate: float = 3.0,
    shape: LatencyShape | None = None,
    seed: int = 4,
    workload: Workload | None = None,
) -> tuple[SimulatedInstance, ManualClock]:
    clock = ManualClock()
    load = workload or Workload(arrival_rate_per_s=rate)
    spec = SimulatedServerSpec(engine, seed=seed, workload=load, latency_shape=shape or LatencyShape())
    return SimulatedInstance(spec, f"{engine}-0", clock), clock


def run(instance: SimulatedInstance, clock: ManualClock, seconds: float) -> Values:
    clock.advance(seconds)
    return scrape(instance)


def post(instance: SimulatedInstance, path: str, body: object) -> tuple[int, dict[str, object]]:
    reply = instance.handle("POST", path, json.dumps(body).encode())
    return reply.status, json.loads(reply.body)


def get(instance: SimulatedInstance, path: str) -> tuple[int, dict[str, object]]:
    reply = instance.handle("GET", path, b"")
    return reply.status, json.loads(reply.body)


def test_a_shape_changes_reported_latencies_only_never_the_traffic_or_the_capacity() -> None:
    plain, plain_clock = server(rate=8.0)
    shaped, shaped_clock = server(rate=8.0, shape=HEAVY)
    a, b = run(plain, plain_clock, 300), run(shaped, shaped_clock, 300)
    for name in ("vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        assert total(a, name) == total(b, name) > 0
    assert total(a, "vllm:num_requests_running") == total(b, "vllm:num_requests_running")
    assert total(a, "vllm:kv_cache_usage_perc") == total(b, "vllm:kv_cache_usage_perc")
    for family in (TTFT, E2E, ITL, TPOT):
        assert total(a, family + "_count") == total(b, family + "_count")
        ratio = total(b, family + "_sum") / total(a, family + "_sum")
        assert ratio == pytest.approx(HEAVY.mean, rel=0.12), family


def test_one_multiplier_stretches_each_requests_whole_timeline() -> None:
    """All requests 2x slower, no spread: every per-request duration doubles exactly, on every engine."""
    double = LatencyShape(slow_share=1.0, slow_factor=2.0)
    for engine, families in {
        "vllm": (TTFT, E2E, QUEUE, "vllm:request_prefill_time_seconds", "vllm:request_decode_time_seconds", TPOT),
        "sglang": ("sglang:time_to_first_token_seconds", "sglang:e2e_request_latency_seconds"),
        "tgi": ("tgi_request_queue_duration", "tgi_request_inference_duration"),
    }.items():
        plain, plain_clock = server(engine, rate=12.0)
        shaped, shaped_clock = server(engine, rate=12.0, shape=double)
        a, b = run(plain, plain_clock, 200), run(shaped, shaped_clock, 200)
        for family in families:
            assert total(b, family + "_sum") == pytest.approx(2 * total(a, family + "_sum"), rel=1e-9), family
        itl = "sglang:inter_token_latency_seconds" if engine == "sglang" else ITL
        if engine != "tgi":  # a tick's tokens are drawn together: compare means
            means = [total(v, itl + "_sum") / total(v, itl + "_count") for v in (a, b)]
            assert means[1] == pytest.approx(2 * means[0], rel=0.01)


def test_without_a_shape_the_page_is_what_it_was_before_the_knob() -> None:
    plain, plain_clock = server(rate=8.0)
    none, none_clock = server(rate=8.0, shape=SHAPE_PRESETS["none"])
    plain_clock.advance(120)
    none_clock.advance(120)
    assert plain.metrics_text() == none.metrics_text()


def test_the_shape_applies_at_low_traffic_where_there_is_no_queue() -> None:
    """3 req/s: TTFT is the prefill alone, and 7% of requests still report 6x of it."""
    plain, plain_clock = server(rate=3.0)
    shaped, shaped_clock = server(rate=3.0, shape=LatencyShape(slow_share=0.07, slow_factor=6.0))
    a, b = run(plain, plain_clock, 900), run(shaped, shaped_clock, 900)
    assert total(a, QUEUE + "_sum") == total(b, QUEUE + "_sum") == 0.0
    assert total(b, TTFT + "_sum") / total(a, TTFT + "_sum") == pytest.approx(0.93 + 0.07 * 6, rel=0.08)
    above = {
        name: 1 - total(v, TTFT + "_bucket", le="0.1") / total(v, TTFT + "_count") for name, v in (("a", a), ("b", b))
    }
    assert above["a"] < 0.015
    assert 0.04 < above["b"] < 0.08  # slow requests: 6x a ~30 ms prefill crosses the 100 ms edge


@pytest.mark.parametrize(("factor", "low", "high"), [(1.5, 1.45, 1.7), (4.0, 4.0, 7.0)])
def test_regressions_apply_on_top_of_the_shape(factor: float, low: float, high: float) -> None:
    """`latency_regression` slows every engine step; the shape then spreads what the slower server reports."""
    base, base_clock = server(rate=3.0, shape=HEAVY)
    slow, slow_clock = server(rate=3.0, shape=HEAVY)
    status, _ = post(slow, "/control/faults", {"latency_regression": factor})
    assert status == 200
    a0, b0 = run(base, base_clock, 60), run(slow, slow_clock, 60)
    a1, b1 = run(base, base_clock, 900), run(slow, slow_clock, 900)
    assert low < mean(b1, b0, TTFT) / mean(a1, a0, TTFT) < high
    assert slow.state()["latency_shape"] == base.state()["latency_shape"]


BUSY = Workload(arrival_rate_per_s=30.0, prompt_tokens_mean=256.0, output_tokens_mean=64.0)  # below capacity


def test_a_ttft_regression_is_exactly_that_factor_at_any_load() -> None:
    """At 30 req/s `latency_regression` 1.5 more than doubles TTFT (queueing); `ttft_regression` is exact."""
    base, base_clock = server(shape=HEAVY, workload=BUSY)
    slow, slow_clock = server(shape=HEAVY, workload=BUSY)
    stepped, stepped_clock = server(shape=HEAVY, workload=BUSY)
    post(slow, "/control/faults", {"ttft_regression": 1.5})
    post(stepped, "/control/faults", {"latency_regression": 1.5})
    a, b, c = run(base, base_clock, 120), run(slow, slow_clock, 120), run(stepped, stepped_clock, 120)
    for family in (TTFT, QUEUE, "vllm:request_prefill_time_seconds"):
        assert total(b, family + "_sum") == pytest.approx(1.5 * total(a, family + "_sum"), rel=1e-9), family
    for name in (ITL + "_sum", "vllm:request_decode_time_seconds_sum", "vllm:request_success_total"):
        assert total(b, name) == pytest.approx(total(a, name), rel=1e-9), name
    extra = total(b, E2E + "_sum") - total(a, E2E + "_sum")  # TTFT counts requests still decoding, e2e does not
    assert extra == pytest.approx(0.5 * total(a, TTFT + "_sum"), rel=0.02)
    assert total(c, TTFT + "_sum") / total(a, TTFT + "_sum") > 2.0


def test_the_regression_variables_are_what_an_actuator_sets_and_rolls_back() -> None:
    base, base_clock = server(shape=HEAVY, workload=BUSY)
    slow, slow_clock = server(shape=HEAVY, workload=BUSY)
    post(base, "/control/apply", {"changes": {}, "env": {}})  # both restart at the same moment
    _, state = post(slow, "/control/apply", {"changes": {}, "env": {TTFT_REGRESSION_ENV: "1.5"}})
    assert (state["state"], state["env"]) == ("running", {TTFT_REGRESSION_ENV: "1.5"})
    a, b = run(base, base_clock, 120), run(slow, slow_clock, 120)
    assert total(b, TTFT + "_sum") == pytest.approx(1.5 * total(a, TTFT + "_sum"), rel=1e-9)
    _, state = post(slow, "/control/apply", {"changes": {}, "env": {TTFT_REGRESSION_ENV: None}})
    assert (state["env"], slow._ranks[0].model.ttft_factor) == ({}, 1.0)


def test_the_step_regression_variable_multiplies_with_its_fault() -> None:
    instance, clock = server(rate=3.0, shape=HEAVY)
    reference, reference_clock = server(rate=3.0, shape=HEAVY)
    status, state = post(instance, "/control/apply", {"changes": {}, "env": {REGRESSION_ENV: "4"}})
    assert (status, state["state"], state["env"]) == (200, "running", {REGRESSION_ENV: "4"})
    post(instance, "/control/faults", {"latency_regression": 1.5})  # a fault and the variable multiply
    assert instance._ranks[0].model.latency_factor == 6.0
    r0, i0 = run(reference, reference_clock, 60), run(instance, clock, 60)
    r1, i1 = run(reference, reference_clock, 600), run(instance, clock, 600)
    assert mean(i1, i0, ITL) / mean(r1, r0, ITL) > 4.5
    post(instance, "/control/faults", {"latency_regression": None})
    _, state = post(instance, "/control/apply", {"changes": {}, "env": {REGRESSION_ENV: None}})
    assert (state["env"], instance._ranks[0].model.latency_factor) == ({}, 1.0)


@pytest.mark.parametrize("name", [REGRESSION_ENV, TTFT_REGRESSION_ENV])
@pytest.mark.parametrize("value", ["fast", "0", "-2", "nan", "1e9"])
def test_a_bad_regression_variable_keeps_the_server_down_like_a_bad_flag(name: str, value: str) -> None:
    instance, _ = server()
    _, state = post(instance, "/control/apply", {"changes": {}, "env": {name: value}})
    assert state["state"] == "crashed"
    assert state["start_error"] == f"{name} must be a number within (0, 1000], got {value!r}"
    _, state = post(instance, "/control/apply", {"changes": {}, "env": {name: None}})
    assert state["state"] == "running"


def test_control_shape_get_set_merge_and_reset() -> None:
    instance, _ = server()
    status, shape = get(instance, "/control/shape")
    assert status == 200
    assert shape == {
        "sigma": 0.0, "slow_share": 0.0, "slow_factor": 1.0, "preset": "none", "seed": 4, "mean_factor": 1.0
    }  # fmt: skip
    status, state = post(instance, "/control/shape", {"preset": "heavy-tailed"})
    assert status == 200
    assert state["latency_shape"] == {**HEAVY.as_dict(), "preset": "heavy-tailed", "seed": 4, "mean_factor": 1.52975}
    _, state = post(instance, "/control/shape", {"slow_factor": 4})
    assert state["latency_shape"]["slow_factor"] == 4.0  # type: ignore[index]
    assert state["latency_shape"]["sigma"] == 0.5  # type: ignore[index]
    assert state["latency_shape"]["preset"] is None  # type: ignore[index]
    post(instance, "/control/restart", {})
    assert get(instance, "/control/shape")[1]["slow_factor"] == 4.0  # a shape survives restarts, like a fault
    _, state = post(instance, "/control/shape", {"preset": "none"})
    assert state["latency_shape"]["preset"] == "none"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"sigma": -1}, "sigma must be within [0.0, 3.0], got -1"),
        ({"sigma": "wide"}, "sigma must be a number"),
        ({"slow_share": 7}, "slow_share must be within [0.0, 1.0], got 7"),
        ({"slow_factor": 0.5}, "slow_factor must be within [1.0, 1000.0], got 0.5"),
        ({"preset": "spiky"}, "preset must be one of none, heavy-tailed, got 'spiky'"),
        ({"seed": "seven"}, "seed must be an integer within [0, 2**63), got 'seven'"),
        ({"tail": 0.1}, "unknown shape field(s) 'tail'; known: preset, sigma, slow_share, slow_factor, seed"),
        ({"preset": "heavy-tailed", "sigma": None}, "sigma must be a number"),
    ],
)
def test_control_shape_rejects_bad_bodies_with_422_and_changes_nothing(body: dict[str, object], fragment: str) -> None:
    instance, _ = server(shape=HEAVY)
    status, error = post(instance, "/control/shape", body)
    assert (status, error["error"]) == (422, "invalid_shape")
    assert fragment in str(error["message"])
    assert get(instance, "/control/shape")[1]["preset"] == "heavy-tailed"


def test_control_shape_rejects_non_objects_and_other_methods() -> None:
    instance, _ = server()
    assert instance.handle("POST", "/control/shape", b"[1]").status == 400
    assert instance.handle("POST", "/control/shape", b"{").status == 400
    assert instance.handle("DELETE", "/control/shape", b"").status == 405


def test_a_seed_replays_the_same_draws_and_ids_keep_servers_independent() -> None:
    def ttft_buckets(instance: SimulatedInstance, clock: ManualClock) -> list[float]:
        values = run(instance, clock, 120)
        return sorted(v for (n, _), v in values.items() if n == TTFT + "_bucket")

    first, first_clock = server(rate=8.0, seed=1)
    second, second_clock = server(rate=8.0, seed=1)
    for instance in (first, second):
        post(instance, "/control/shape", {"preset": "heavy-tailed", "seed": 99})
    assert ttft_buckets(first, first_clock) == ttft_buckets(second, second_clock)
    third, third_clock = server(rate=8.0, seed=1)
    post(third, "/control/shape", {"preset": "heavy-tailed", "seed": 100})
    assert ttft_buckets(third, third_clock) != ttft_buckets(first, first_clock)
    assert get(third, "/control/shape")[1]["seed"] == 100
