"""Hand-made window figures for detector and SLO tests: a healthy baseline per engine plus overrides."""

from __future__ import annotations

from typing import Any

from performance_agent.analysis.schemas import WindowFigures
from performance_agent.metrics.snapshot import Approximation, Errors, Latency, Load, Quantiles, Throughput

__all__ = ("ENGINES", "healthy_figures", "set_path")

ENGINES = ("vllm", "tgi", "sglang")

TGI_APPROXIMATIONS = [
    Approximation(field="latency.ttft_s", formula="tgi_request_queue_duration + tgi_batch_inference_duration{prefill}"),
    Approximation(field="latency.itl_s", formula='tgi_batch_forward_duration{method="decode"}'),
    Approximation(field="load.kv_cache_usage", formula="tgi_batch_current_max_tokens / tgi_batch_max_total_tokens"),
]


def set_path(figures: WindowFigures, path: str, value: Any) -> None:
    """Set a dotted attribute such as `latency.ttft_s.p99` on the figures."""
    *parents, leaf = path.split(".")
    target: Any = figures
    for name in parents:
        target = getattr(target, name)
    setattr(target, leaf, value)


def healthy_figures(engine: str, **overrides: Any) -> WindowFigures:
    """A busy but healthy instance: moderate batch, fast tokens, no queue, no errors.

    TGI carries what its adapter would give: no preemption figure and approximated TTFT, ITL
    and KV usage. Overrides use dotted paths with `__` for dots (`latency__ttft_s__p99=2.0`).
    """
    figures = WindowFigures(
        engine=engine,
        latency=Latency(
            ttft_s=Quantiles(p50=0.1, p90=0.2, p95=0.25, p99=0.3, mean=0.12, count=500),
            itl_s=Quantiles(p50=0.02, p90=0.025, p95=0.028, p99=0.03, mean=0.021, count=60000),
            e2e_s=Quantiles(p50=3.0, p90=4.5, p95=5.0, p99=6.0, mean=3.2, count=500),
            queue_s=Quantiles(p50=0.0, p90=0.01, p95=0.02, p99=0.04, mean=0.01, count=500),
        ),
        throughput=Throughput(requests_per_s=5.0, prompt_tokens_per_s=4000.0, generation_tokens_per_s=1200.0),
        load=Load(
            requests_running=16.0,
            requests_waiting=0.0,
            kv_cache_usage=0.5,
            prefix_cache_hit_rate=None if engine == "tgi" else 0.3,
            preemptions_per_s=None if engine == "tgi" else 0.0,
        ),
        errors=Errors(requests_failed_per_s=0.0, error_rate=0.0),
        window_s=15.0,
        samples=60,
        approximations=list(TGI_APPROXIMATIONS) if engine == "tgi" else [],
    )
    for key, value in overrides.items():
        set_path(figures, key.replace("__", "."), value)
    return figures
