"""Every real page in tests/fixtures/metrics: parsed, recognised, adapted, and its figures checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
import pytest

from performance_agent.engines.base import detect_engine
from performance_agent.engines.registry import adapt_page
from performance_agent.metrics.builder import build_snapshot, raw_scrape
from performance_agent.metrics.exposition import parse_page
from tests.paths import METRIC_PAGES

if TYPE_CHECKING:
    from performance_agent.metrics.snapshot import InstanceSnapshot

COLLECTED_AT = datetime(2025, 3, 22, 7, 0, 0, tzinfo=UTC)
ENGINES = {
    "sglang-docs-2024-llama31-8b-loaded.prom": "sglang",
    "sglang-pr4444-2025-03-engine-type.prom": "sglang",
    "tgi-aiongke-grep-request-count.prom": "tgi",
    "vllm-aibrix-runtime-docs-v0.7.prom": "vllm",
    "vllm-prodstack318-v1-0.8.prom": "vllm",
}


def fixture_snapshot(name: str) -> InstanceSnapshot:
    page = parse_page((METRIC_PAGES / name).read_text())
    engine = ENGINES[name]
    return build_snapshot(
        instance_id="fixture",
        engine=engine,
        endpoint="http://127.0.0.1:8000",
        collected_at=COLLECTED_AT,
        current=adapt_page(engine, page),
        previous=None,
    )


def test_every_fixture_is_covered_here() -> None:
    assert sorted(path.name for path in METRIC_PAGES.glob("*.prom")) == sorted(ENGINES)


@pytest.mark.parametrize(("name", "engine"), sorted(ENGINES.items()))
def test_each_fixture_is_recognised_and_gives_a_json_safe_snapshot(name: str, engine: str) -> None:
    assert detect_engine(parse_page((METRIC_PAGES / name).read_text())) == engine
    encoded = msgspec.json.encode(fixture_snapshot(name))
    assert b"NaN" not in encoded
    assert b"Infinity" not in encoded


class TestSglang2024LoadedServer:
    """`sglang-docs-2024-llama31-8b-loaded.prom`: 11k requests, long queue, no start time on the page."""

    snap = fixture_snapshot("sglang-docs-2024-llama31-8b-loaded.prom")

    def test_model_and_window(self) -> None:
        assert self.snap.model_name == "meta-llama/Llama-3.1-8B-Instruct"
        assert self.snap.models == []
        assert self.snap.window_s is None

    def test_ttft_beyond_the_last_finite_bucket(self) -> None:
        ttft = self.snap.latency.ttft_s
        # count 11008; rank 5504 > le=30.0's 2513: PromQL answers the highest finite edge, 30.0
        assert ttft.p50 == 30.0
        assert ttft.p99 == 30.0
        assert ttft.count == 11008
        assert ttft.mean == pytest.approx(2.3518979474117756e06 / 11008)

    def test_itl_from_the_2024_time_per_output_token_histogram(self) -> None:
        itl = self.snap.latency.itl_s
        count = 7.400757e06
        # p50 rank 3700378.5 lies in (0.075, 0.1]: le=0.075 433413, le=0.1 4950195
        assert itl.p50 == pytest.approx(0.075 + 0.025 * (0.5 * count - 433413) / (4.950195e06 - 433413))
        # p90 rank 6660681.3 lies in (0.1, 0.15]: le=0.15 7039435
        assert itl.p90 == pytest.approx(0.1 + 0.05 * (0.9 * count - 4.950195e06) / (7.039435e06 - 4.950195e06))
        # p99 rank 7326749.43 lies in (0.5, 0.75]: le=0.5 7312226, le=0.75 7339675
        assert itl.p99 == pytest.approx(0.5 + 0.25 * (0.99 * count - 7.312226e06) / (7.339675e06 - 7.312226e06))
        assert itl.mean == pytest.approx(866964.5791549598 / count)
        assert itl.count == count

    def test_e2e(self) -> None:
        e2e = self.snap.latency.e2e_s
        # count 11228; rank 5614 > le=60.0's 1513
        assert e2e.p50 == 60.0
        assert e2e.mean == pytest.approx(3.116093850019932e06 / 11228)
        assert e2e.count == 11228

    def test_load(self) -> None:
        load = self.snap.load
        assert load.requests_running == 162
        assert load.requests_waiting == 2826
        assert load.kv_cache_usage == 0.28
        assert load.prefix_cache_hit_rate == 0.007507552643049313
        assert load.preemptions_per_s is None

    def test_rates_unknown_without_a_start_and_errors_unknown(self) -> None:
        assert self.snap.throughput.requests_per_s is None
        assert self.snap.throughput.prompt_tokens_per_s is None
        assert self.snap.latency.queue_s.p50 is None
        assert self.snap.errors.error_rate is None
        assert self.snap.errors.requests_failed_per_s is None
        assert self.snap.engine_config == {}

    def test_derived_fields_are_declared(self) -> None:
        fields = sorted(a.field for a in self.snap.approximations)
        assert fields == ["load.prefix_cache_hit_rate", "throughput.requests_per_s"]

    def test_a_second_scrape_gives_window_rates(self) -> None:
        page = (METRIC_PAGES / "sglang-docs-2024-llama31-8b-loaded.prom").read_text()
        first = adapt_page("sglang", parse_page(page))
        later_page = page.replace(
            'sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.557572e+06',
            'sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.558472e+06',
        )
        assert later_page != page
        snap = build_snapshot(
            instance_id="fixture",
            engine="sglang",
            endpoint="http://127.0.0.1:30000",
            collected_at=COLLECTED_AT + timedelta(seconds=15),
            current=adapt_page("sglang", parse_page(later_page)),
            previous=raw_scrape(first, COLLECTED_AT),
        )
        assert snap.window_s == 15.0
        assert snap.throughput.generation_tokens_per_s == pytest.approx(900 / 15)
        assert snap.throughput.prompt_tokens_per_s == 0.0
        assert snap.latency.ttft_s.p50 is None  # no request finished in the window
        assert snap.latency.ttft_s.count == 0


class TestSglangEngineTypeFragment:
    snap = fixture_snapshot("sglang-pr4444-2025-03-engine-type.prom")

    def test_idle_server_reports_real_zeros_and_unknowns(self) -> None:
        assert self.snap.model_name == "/shared/public/models/Meta-Llama-3-8B-Instruct"
        assert self.snap.load.requests_running == 0.0
        assert self.snap.load.kv_cache_usage == 0.0
        assert self.snap.load.requests_waiting is None  # num_queue_reqs is not in the excerpt
        assert self.snap.latency.ttft_s.p50 is None
        assert self.snap.throughput.generation_tokens_per_s is None
        assert self.snap.approximations == []


class TestTgiGrepExcerpt:
    snap = fixture_snapshot("tgi-aiongke-grep-request-count.prom")

    def test_only_received_requests_are_known_so_everything_else_is_unknown(self) -> None:
        figures = msgspec.to_builtins(self.snap)
        for section in ("latency", "throughput", "load", "errors"):
            values = figures[section]
            flat = [v for q in values.values() for v in (q.values() if isinstance(q, dict) else [q])]
            assert flat
            assert all(value is None for value in flat), section
        assert self.snap.model_name is None
        assert self.snap.engine_config == {}
        assert self.snap.approximations == []


class TestVllmV0Aibrix:
    snap = fixture_snapshot("vllm-aibrix-runtime-docs-v0.7.prom")

    def test_cache_config_labels_become_typed_config(self) -> None:
        assert self.snap.engine_config == {
            "block_size": 16,
            "cache_dtype": "auto",
            "calculate_kv_scales": False,
            "cpu_offload_gb": 0,
            "enable_prefix_caching": False,
            "gpu_memory_utilization": 0.9,
            "is_attention_free": False,
            "num_cpu_blocks": 9362,
            "num_gpu_blocks": 81767,
            "num_gpu_blocks_override": None,
            "sliding_window": None,
            "swap_space_bytes": 4294967296,
            "max_lora": 0,
        }

    def test_load_from_v0_names(self) -> None:
        assert self.snap.model_name == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
        assert self.snap.load.requests_running == 0.0
        assert self.snap.load.requests_waiting == 0.0
        assert self.snap.load.kv_cache_usage == 0.0  # gpu_cache_usage_perc
        assert self.snap.load.prefix_cache_hit_rate is None  # gpu_prefix_cache_hit_rate -1 = unused
        assert self.snap.approximations == []

    def test_lifetime_ratios_known_rates_not(self) -> None:
        # request_success_total{finished_reason="stop"} 4, no abort/error: 0 of 4 failed
        assert self.snap.errors.error_rate == 0.0
        assert self.snap.throughput.requests_per_s is None  # no process_start_time_seconds, no _created
        assert self.snap.latency.ttft_s.count is None  # the excerpt stops inside iteration_tokens_total

    def test_raw_counters(self) -> None:
        adapted = adapt_page("vllm", parse_page((METRIC_PAGES / "vllm-aibrix-runtime-docs-v0.7.prom").read_text()))
        assert adapted.total.counters == {
            "requests_finished": 4.0,
            "requests_failed": 0.0,
            "prompt_tokens": 148.0,
            "generation_tokens": 955.0,
            "preemptions": 0.0,
        }


class TestVllmV1Prodstack:
    name = "vllm-prodstack318-v1-0.8.prom"
    snap = fixture_snapshot(name)

    def test_gauges_and_unknown_prefix_counters_of_a_cut_page(self) -> None:
        assert self.snap.model_name == "Qwen/Qwen2.5-Coder-32B-Instruct"
        assert self.snap.load.requests_running == 0.0
        assert self.snap.load.requests_waiting == 0.0
        assert self.snap.load.kv_cache_usage == 0.0
        # gpu_prefix_cache_queries_total is declared but the excerpt ends before its samples
        assert self.snap.load.prefix_cache_hit_rate is None
        assert self.snap.throughput.requests_per_s is None
        assert self.snap.engine_config == {}

    def test_process_start_time_is_the_counting_start(self) -> None:
        adapted = adapt_page("vllm", parse_page((METRIC_PAGES / self.name).read_text()))
        assert adapted.total.process_start_time_s == 1.74262400557e09
        assert adapted.models["Qwen/Qwen2.5-Coder-32B-Instruct"].process_start_time_s == 1.74262400557e09
