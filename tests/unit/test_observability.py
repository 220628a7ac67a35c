from __future__ import annotations

import json
import logging

from prometheus_client import CollectorRegistry, generate_latest

from performance_agent.observability import JsonFormatter, RequestMetrics, request_id_of


def _record(message: str, **extra: object) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "performance_agent.x", "levelname": "INFO", "msg": message, **extra})


def test_lines_are_json_with_extras_and_request_id() -> None:
    line = JsonFormatter().format(_record("scraped %s", args=("vllm-0",), request_id="req-1", instance="vllm-0"))
    entry = json.loads(line)
    assert entry["message"] == "scraped vllm-0"
    assert entry["request_id"] == "req-1"
    assert entry["instance"] == "vllm-0"
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("+00:00")


def test_request_id_of_a_scope_binds_the_log_context() -> None:
    scope = {"type": "http", "headers": [(b"x-request-id", b"abc-123")]}
    assert request_id_of(scope) == "abc-123"  # type: ignore[arg-type]
    entry = json.loads(JsonFormatter().format(_record("inside the request")))
    assert entry["request_id"] == "abc-123"


def test_non_json_values_are_represented_and_tracebacks_kept() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = _record("failed", exc_info=(type(exc), exc, exc.__traceback__), payload={"a": 1})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["payload"] == "{'a': 1}"
    assert "ValueError: boom" in entry["traceback"]


def test_request_metrics_expose_counts_and_cumulative_le_buckets_at_scrape_time() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry)
    metrics.record("/api/v1/health", "GET", 200, 0.001)  # on an edge: counted in le="0.001"
    metrics.record("/api/v1/health", "GET", 200, 0.003)
    metrics.record("/api/v1/health", "GET", 503, 20.0)  # beyond every edge: +Inf only
    value = registry.get_sample_value
    health = {"route": "/api/v1/health", "method": "GET"}
    assert value("performance_agent_http_requests_total", {**health, "status": "200"}) == 2.0
    assert value("performance_agent_http_requests_total", {**health, "status": "503"}) == 1.0
    assert metrics.answered("/api/v1/health", "GET", 200) == 2
    assert value("performance_agent_http_request_duration_seconds_bucket", {**health, "le": "0.001"}) == 1.0
    assert value("performance_agent_http_request_duration_seconds_bucket", {**health, "le": "0.005"}) == 2.0
    assert value("performance_agent_http_request_duration_seconds_bucket", {**health, "le": "10.0"}) == 2.0
    assert value("performance_agent_http_request_duration_seconds_bucket", {**health, "le": "+Inf"}) == 3.0
    assert value("performance_agent_http_request_duration_seconds_count", health) == 3.0
    assert value("performance_agent_http_request_duration_seconds_sum", health) == 20.004
    assert b"# TYPE performance_agent_http_requests_total counter" in generate_latest(registry)
