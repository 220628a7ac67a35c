"""Severe faults must keep the load model consistent (a 6x regression once crashed it after ~40 scrapes)."""

from __future__ import annotations

import pytest

from performance_agent.simulator import ManualClock
from performance_agent.simulator.instance import SimulatedInstance, SimulatedServerSpec


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi"])
@pytest.mark.parametrize("factor", [6.0, 25.0])
def test_large_latency_regressions_keep_serving_pages(engine: str, factor: float) -> None:
    clock = ManualClock()
    instance = SimulatedInstance(SimulatedServerSpec(engine=engine, seed=3), f"{engine}-0", clock)
    instance.set_faults({"latency_regression": factor})
    for _ in range(80):
        clock.advance(15.0)
        page = instance.metrics_text()
    assert "# TYPE" in page
