"""The control API of one simulated instance, driven through `handle()` without sockets."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from performance_agent.simulator import ManualClock, SimulatedInstance, SimulatedServerSpec, Workload
from performance_agent.simulator.instance import GARBAGE_PAGE, Reply


def make(engine: str = "vllm", **spec: object) -> tuple[SimulatedInstance, ManualClock]:
    clock = ManualClock()
    instance = SimulatedInstance(SimulatedServerSpec(engine, seed=2, **spec), f"{engine}-0", clock)  # type: ignore[arg-type]
    return instance, clock


def post(instance: SimulatedInstance, path: str, body: object) -> tuple[int, dict[str, object]]:
    reply = instance.handle("POST", path, json.dumps(body).encode())
    return reply.status, json.loads(reply.body)


def get_json(instance: SimulatedInstance, path: str) -> dict[str, object]:
    reply = instance.handle("GET", path, b"")
    assert reply.status == 200, reply
    payload = json.loads(reply.body)
    assert isinstance(payload, dict)
    return payload


def counter(instance: SimulatedInstance, name: str) -> float:
    reply = instance.handle("GET", "/metrics", b"")
    assert reply.status == 200
    return sum(
        s.value for f in text_string_to_metric_families(reply.body.decode()) for s in f.samples if s.name == name
    )


def test_control_reports_flags_config_derived_and_gauges() -> None:
    instance, clock = make(flags={"--max-num-seqs": 128})
    clock.advance(30)
    state = get_json(instance, "/control")
    assert state["engine"] == "vllm"
    assert state["version"] == "current"
    assert state["state"] == "running"
    assert state["flags"] == {"--max-num-seqs": 128}
    assert state["config"]["max_num_seqs"] == 128  # type: ignore[index]
    assert state["config"]["gpu_memory_utilization"] == 0.9  # type: ignore[index]
    assert state["derived"]["max_running"] == 128  # type: ignore[index]
    assert state["sim_time_s"] == pytest.approx(30.0)
    assert 0 < state["gauges"]["kv_cache_usage"] < 1  # type: ignore[index]


@pytest.mark.parametrize("key", ["max_num_seqs", "--max-num-seqs", "max-num-seqs"])
def test_config_accepts_every_spelling(key: str) -> None:
    instance, _ = make()
    status, state = post(instance, "/control/config", {key: 64})
    assert status == 200
    assert state["flags"] == {"--max-num-seqs": 64}
    assert state["derived"]["max_running"] == 64  # type: ignore[index]


def test_config_change_applies_live_without_resetting_counters() -> None:
    instance, clock = make(workload=Workload(arrival_rate_per_s=30.0))
    clock.advance(60)
    before = counter(instance, "vllm:generation_tokens_total")
    status, _ = post(instance, "/control/config", {"--max-num-seqs": 16})
    assert status == 200
    clock.advance(30)
    assert counter(instance, "vllm:generation_tokens_total") > before
    assert counter(instance, "vllm:num_requests_running") <= 16
    status, state = post(instance, "/control/config", {"--max-num-seqs": None})  # back to the default
    assert status == 200
    assert state["config"]["max_num_seqs"] == 256  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"--no-such-flag": 1}, 400, "unknown_flag"),
        ({"--max-num-seqs": "lots"}, 422, "invalid_config"),
        ({"--gpu-memory-utilization": 0.2}, 422, "invalid_config"),
        ({"--data-parallel-size": 2}, 409, "restart_required"),
    ],
)
def test_config_refuses_what_the_engine_would_not_run(body: dict[str, object], status: int, code: str) -> None:
    instance, _ = make()
    before = get_json(instance, "/control")
    got, payload = post(instance, "/control/config", body)
    assert (got, payload["error"]) == (status, code)
    assert get_json(instance, "/control")["flags"] == before["flags"]


def test_restart_resets_counters_and_start_time() -> None:
    instance, clock = make()
    clock.advance(60)
    assert counter(instance, "vllm:prompt_tokens_total") > 0
    started = counter(instance, "process_start_time_seconds")
    status, state = post(instance, "/control/restart", {})
    assert status == 200
    assert state["restarts"] == 1
    assert counter(instance, "vllm:prompt_tokens_total") == 0
    assert counter(instance, "vllm:e2e_request_latency_seconds_count") == 0
    assert counter(instance, "process_start_time_seconds") == started + 60


def test_apply_changes_flags_and_restarts() -> None:
    instance, clock = make()
    clock.advance(60)
    blocks_before = get_json(instance, "/control")["derived"]["kv_capacity_tokens"]  # type: ignore[index]
    status, state = post(instance, "/control/apply", {"changes": {"--kv-cache-dtype": "fp8"}, "env": {}})
    assert status == 200
    assert state["state"] == "running"
    assert state["flags"] == {"--kv-cache-dtype": "fp8"}
    assert state["derived"]["kv_capacity_tokens"] == pytest.approx(2 * blocks_before, rel=0.01)  # type: ignore[index]
    assert counter(instance, "vllm:prompt_tokens_total") == 0


def test_apply_with_a_bad_flag_crashes_until_rolled_back() -> None:
    instance, clock = make()
    status, state = post(instance, "/control/apply", {"changes": {"--gpu-memory-utilization": 0.25}})
    assert status == 200
    assert state["state"] == "crashed"
    assert "No available memory" in str(state["start_error"])
    assert instance.handle("GET", "/metrics", b"").drop
    assert instance.handle("GET", "/health", b"").drop
    assert get_json(instance, "/control")["state"] == "crashed"  # the control API still answers
    status, state = post(instance, "/control/config", {"--max-num-seqs": 8})
    assert (status, state["error"]) == (409, "not_running")
    status, state = post(instance, "/control/apply", {"changes": {"--gpu-memory-utilization": None}})
    assert state["state"] == "running"
    assert state["flags"] == {}
    clock.advance(10)
    assert counter(instance, "vllm:prompt_tokens_total") > 0


def test_apply_with_an_unknown_flag_is_a_failed_redeploy() -> None:
    instance, _ = make("sglang")
    _, state = post(instance, "/control/apply", {"changes": {"--turbo": True}})
    assert state["state"] == "crashed"
    assert state["start_error"] == "unrecognized arguments: --turbo"
    _, state = post(instance, "/control/apply", {"changes": {"--turbo": None}})
    assert state["state"] == "running"


@pytest.mark.parametrize(
    "body", [{"changes": ["--max-num-seqs", 8]}, {"changes": {}, "env": "X=1"}, {"changes": {}, "restart": True}]
)
def test_apply_rejects_malformed_bodies(body: object) -> None:
    instance, _ = make()
    status, payload = post(instance, "/control/apply", body)
    assert (status, payload["error"]) == (400, "invalid_body")


def test_tgi_env_prefix_caching_applies_through_the_actuator() -> None:
    instance, _ = make("tgi")
    assert get_json(instance, "/control")["derived"]["prefix_caching"] is True  # type: ignore[index]
    _, state = post(instance, "/control/apply", {"changes": {}, "env": {"PREFIX_CACHING": False}})
    assert state["env"] == {"PREFIX_CACHING": "false"}
    assert state["derived"]["prefix_caching"] is False  # type: ignore[index]


def test_faults_set_validate_survive_restarts_and_clear() -> None:
    instance, _ = make()
    status, state = post(instance, "/control/faults", {"latency_regression": 2.5, "error_burst": 0.2})
    assert status == 200
    assert state["faults"] == {"latency_regression": 2.5, "error_burst": 0.2}
    post(instance, "/control/restart", {})
    assert get_json(instance, "/control")["faults"] == {"latency_regression": 2.5, "error_burst": 0.2}
    _, state = post(instance, "/control/faults", {"error_burst": 0})
    assert state["faults"] == {"latency_regression": 2.5}
    _, state = post(instance, "/control/faults", {"clear": True, "garbage_page": True})
    assert state["faults"] == {"garbage_page": True}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"meltdown": True}, "unknown_fault"),
        ({"latency_regression": -1}, "invalid_value"),
        ({"kv_pressure": 1.5}, "invalid_value"),
        ({"error_burst": "half"}, "invalid_value"),
        ({"unreachable": "yes"}, "invalid_value"),
        ({"http_error": 200}, "invalid_value"),
        ({"clear": 1}, "invalid_value"),
    ],
)
def test_faults_reject_bad_values(body: dict[str, object], code: str) -> None:
    instance, _ = make()
    status, payload = post(instance, "/control/faults", body)
    assert (status, payload["error"]) == (400, code)
    assert get_json(instance, "/control")["faults"] == {}


def test_data_plane_faults_shape_the_metrics_reply() -> None:
    instance, _ = make()
    post(instance, "/control/faults", {"garbage_page": True})
    garbage = instance.handle("GET", "/metrics", b"")
    assert (garbage.status, garbage.content_type, garbage.body.decode()) == (
        200,
        "text/html; charset=utf-8",
        GARBAGE_PAGE,
    )
    with pytest.raises(ValueError, match="invalid metric name"):
        list(text_string_to_metric_families(garbage.body.decode()))
    post(instance, "/control/faults", {"garbage_page": None, "http_error": 503, "scrape_delay_s": 2.5})
    failing = instance.handle("GET", "/metrics", b"")
    assert (failing.status, failing.delay_s) == (503, 2.5)
    post(instance, "/control/faults", {"clear": True, "unreachable": True})
    assert instance.handle("GET", "/metrics", b"") == Reply(0, drop=True)
    assert instance.handle("GET", "/control", b"").status == 200


def test_load_control_validates_fields() -> None:
    instance, _ = make()
    status, state = post(instance, "/control/load", {"arrival_rate_per_s": 2.5, "prompt_tokens_mean": 2048})
    assert status == 200
    assert state["load"]["arrival_rate_per_s"] == 2.5  # type: ignore[index]
    assert post(instance, "/control/load", {"qps": 3})[1]["error"] == "unknown_field"
    assert post(instance, "/control/load", {"prefix_share": 2})[1]["error"] == "invalid_value"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/nope", b"", 404, "not_found"),
        ("POST", "/metrics", b"", 405, "method_not_allowed"),
        ("GET", "/control/faults", b"", 405, "method_not_allowed"),
        ("POST", "/control/faults", b"{not json", 400, "invalid_json"),
        ("POST", "/control/faults", b"[1, 2]", 400, "invalid_body"),
        ("GET", "/info", b"", 404, "not_found"),  # TGI's route does not exist on vLLM
    ],
)
def test_http_error_paths(method: str, path: str, body: bytes, status: int, code: str) -> None:
    instance, _ = make()
    reply = instance.handle(method, path, body)
    assert reply.status == status
    assert json.loads(reply.body)["error"] == code


def test_info_routes_reveal_engine_config() -> None:
    tgi, _ = make("tgi", flags={"--max-concurrent-requests": 64, "--max-total-tokens": 4096})
    info = get_json(tgi, "/info")
    assert info["max_concurrent_requests"] == 64
    assert (info["max_total_tokens"], info["max_input_tokens"]) == (4096, 4095)
    assert info["model_id"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert info["version"] == "3.3.7"
    sglang, _ = make("sglang", flags={"--mem-fraction-static": 0.8})
    server = get_json(sglang, "/get_server_info")
    assert server["mem_fraction_static"] == 0.8
    assert server["max_total_num_tokens"] == counter(sglang, "sglang:max_total_num_tokens")
    assert get_json(make("vllm", version="old")[0], "/version") == {"version": "0.8.5"}


def test_served_model_name_flag_renames_the_model_label() -> None:
    instance, _ = make(flags={"--served-model-name": "chat"})
    reply = instance.handle("GET", "/metrics", b"")
    assert 'model_name="chat"' in reply.body.decode()
